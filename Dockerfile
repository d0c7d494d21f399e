# One image for every hybridfleet role; the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY edge_worker ./edge_worker
COPY cloud_worker ./cloud_worker
COPY models ./models
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 1000 hybridfleet
USER hybridfleet
ENTRYPOINT ["hybridfleet"]
