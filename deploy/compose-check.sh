#!/usr/bin/env bash
# A real run of docker-compose.yml: build, start, check every site is answered, stop
# cleanly, clean up. `make compose-check` runs it; docs/operations.md ("The compose
# stack") explains what it checks. Bounded in time: every step has a timeout.
#
#   deploy/compose-check.sh            exit 0: every check passed; 1: a check failed;
#                                      2: no Docker engine could be had
#
# Variables: PYTHON (default .venv/bin/python: the probe's client), DOCKER (docker),
# HF_BASE_IMAGE (the Dockerfile's base; default python:3.11-slim, and when that cannot
# be pulled, hybridfleet-base:bookworm from deploy/base-image.sh), HF_CHECK_WINDOW
# (seconds the probe watches, default 20), HF_CHECK_WORKDIR (logs; default a temp dir).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DOCKER="${DOCKER:-docker}"
WINDOW="${HF_CHECK_WINDOW:-20}"
PROJECT="hybridfleet-check"
WORK="${HF_CHECK_WORKDIR:-$(mktemp -d /tmp/hybridfleet-compose-check.XXXXXX)}"
mkdir -p "$WORK"
ENV_FILE="$WORK/compose.env"
DOCKERD_PID=""
FAILED=()

say() { echo "[compose-check] $*"; }
fail() { say "FAIL: $*"; FAILED+=("$*"); }

# ------------------------------------------------------------------ the engine
start_dockerd() {
    if "$DOCKER" info >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v dockerd >/dev/null || [[ $(id -u) != 0 ]]; then
        say "no Docker engine answers, and dockerd cannot be started here" \
            "(install docker.io and run as root, or start the engine)"
        exit 2
    fi
    say "starting dockerd (log: $WORK/dockerd.log)"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    say "dockerd did not come up; the end of its log:"
    tail -20 "$WORK/dockerd.log" >&2
    exit 2
}

stop_dockerd() {
    if [[ -n $DOCKERD_PID ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        say "stopping the dockerd this check started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID"
        for _ in $(seq 40); do kill -0 "$DOCKERD_PID" 2>/dev/null || return 0; sleep 0.5; done
        kill -9 "$DOCKERD_PID" 2>/dev/null || true
    fi
}

# Compose v2 (the docker CLI plugin) or v1 (docker-compose).
if "$DOCKER" compose version >/dev/null 2>&1; then
    COMPOSE=("$DOCKER" compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    say "neither 'docker compose' nor docker-compose is installed"
    exit 2
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" --env-file "$ENV_FILE" "$@"; }

cleanup() {
    local code=$?
    if [[ -s $ENV_FILE ]]; then
        say "cleaning up: compose down -v"
        timeout 120 "${COMPOSE[@]}" -p "$PROJECT" --env-file "$ENV_FILE" down -v \
            --remove-orphans >"$WORK/down.log" 2>&1 || say "compose down failed: see $WORK/down.log"
        rm -f "$ENV_FILE"  # the passwords of this run only
    fi
    stop_dockerd
    say "logs kept in $WORK"
    exit "$code"
}
trap cleanup EXIT

start_dockerd
say "engine: $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null); compose: $("${COMPOSE[@]}" version --short 2>/dev/null || echo '?')"

# ------------------------------------------------------------------ the image
BASE="${HF_BASE_IMAGE:-python:3.11-slim}"
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1 \
    && ! timeout 180 "$DOCKER" pull "$BASE" >"$WORK/pull-base.log" 2>&1; then
    say "cannot pull $BASE ($(tail -1 "$WORK/pull-base.log")); making a local base image"
    BASE="hybridfleet-base:bookworm"
    DOCKER="$DOCKER" timeout 900 deploy/base-image.sh "$BASE"
fi
say "building hybridfleet:latest from $BASE (log: $WORK/build.log)"
start=$SECONDS
if ! timeout 1200 "$DOCKER" build --build-arg "BASE_IMAGE=$BASE" -t hybridfleet:latest . \
    >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log" >&2
    fail "docker build"
    exit 1
fi
say "built in $((SECONDS - start)) s; context: $(grep -m1 -o 'Sending build context.*' "$WORK/build.log" || echo 'n/a (BuildKit)')"

# ------------------------------------------------------------------ passwords and ports
"$PYTHON" deploy/compose_auth.py env --file "$ENV_FILE" >/dev/null
# Free host ports for this run, so that it runs beside anything else on the machine.
"$PYTHON" - >>"$ENV_FILE" <<'EOF'
import socket
socks = []
for name in ("HF_SITE1_PORT", "HF_SITE2_PORT", "HF_HUB_MONITOR_PORT",
             "HF_PROMETHEUS_PORT", "HF_GRAFANA_PORT"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    print(f"{name}={s.getsockname()[1]}")
EOF

# ------------------------------------------------------------------ up
SERVICES=$(compose config --services)
for extra in prometheus grafana; do
    image=$(compose config | "$PYTHON" -c "import sys, yaml; print(yaml.safe_load(sys.stdin)['services']['$extra']['image'])")
    if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1 \
        && ! timeout 60 "$DOCKER" pull "$image" >"$WORK/pull-$extra.log" 2>&1; then
        say "skipping $extra: its image $image cannot be pulled here"
        SERVICES=$(grep -vx "$extra" <<<"$SERVICES")
    fi
done
# A run of this check that was cut short may have left its stack behind.
compose down -v --remove-orphans >/dev/null 2>&1 || true
# shellcheck disable=SC2086  # one word per service
say "up: $(echo $SERVICES)"
if ! timeout 300 "${COMPOSE[@]}" -p "$PROJECT" --env-file "$ENV_FILE" up -d --no-build \
    $SERVICES >"$WORK/up.log" 2>&1; then
    tail -30 "$WORK/up.log" >&2
    compose logs --no-color >"$WORK/compose.log" 2>&1 || true
    fail "compose up"
    exit 1
fi

# ------------------------------------------------------------------ are frames answered?
# The cameras start last; give the workers a moment, then watch.
say "probing every site for $WINDOW s"
sleep 5
if timeout $((WINDOW + 90)) "$PYTHON" deploy/compose_probe.py --env-file "$ENV_FILE" \
    --window "$WINDOW" >"$WORK/probe.json" 2>"$WORK/probe.err"; then
    say "probe: every site's frames answered once"
else
    fail "probe (see $WORK/probe.json, $WORK/probe.err)"
fi
cat "$WORK/probe.json"

# ------------------------------------------------------------------ stop
say "stopping (compose stop: cameras, edge workers, cloud workers, servers)"
start=$SECONDS
timeout 300 "${COMPOSE[@]}" -p "$PROJECT" --env-file "$ENV_FILE" stop >"$WORK/stop.log" 2>&1 \
    || fail "compose stop"
say "stopped in $((SECONDS - start)) s"
compose logs --no-color --timestamps >"$WORK/compose.log" 2>&1 || true

say "containers (name, exit code, restarts, started, finished):"
# By label: `compose ps` of Compose v2 lists only running containers.
for id in $("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
    line=$("$DOCKER" inspect -f \
        '{{.Name}} {{.State.ExitCode}} {{.RestartCount}} {{.State.StartedAt}} {{.State.FinishedAt}}' "$id")
    echo "  ${line#/}"
    read -r name code _ <<<"$line"
    if [[ $code == 137 ]]; then
        fail "${name#/} was killed (exit 137)"
    elif [[ $code != 0 ]]; then
        fail "${name#/} exited $code"
    fi
done

# ------------------------------------------------------------------ logs
count() { grep -c -E "$1" "$WORK/compose.log" || true; }
violations=$(count '[Pp]ermissions [Vv]iolation')
telemetry=$(count 'Failed to persist telemetry')
missing=$(count 'ModuleNotFoundError')
authfail=$(count '[Aa]uthorization [Vv]iolation|[Aa]uthentication error')
say "log lines: permission violations $violations, authorization failures $authfail," \
    "ModuleNotFoundError $missing, onnxruntime telemetry $telemetry"
[[ $violations == 0 ]] || { grep -m5 -E '[Pp]ermissions [Vv]iolation' "$WORK/compose.log" >&2; fail "permission violations in the logs"; }
[[ $authfail == 0 ]] || fail "authorization failures in the logs"
[[ $missing == 0 ]] || fail "a module is missing in the image"
[[ $telemetry == 0 ]] || fail "onnxruntime cannot persist its telemetry id (HOME)"

if ((${#FAILED[@]})); then
    say "FAILED: ${#FAILED[@]} check(s)"
    exit 1
fi
say "PASSED: built, every site answered, stopped with no container killed"
