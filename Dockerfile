# One image for every Frame Buffer v2 service; docker-compose picks the service with
# `frame-orchestrator <subcommand>` and configures it only through environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/frame-buffer

# Metadata first, so editing code does not invalidate the dependency layer's cache key alone.
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY bridge ./bridge
COPY sdk ./sdk
COPY sample_processors ./sample_processors
COPY bench ./bench

RUN pip install ./sdk . \
    && useradd --create-home --uid 10001 frames \
    && mkdir -p /data \
    && chown frames /data

USER frames
# RocksDB table stores of a worker; docker-compose mounts a volume here.
ENV DATA_DIR=/data

# worker web API + dashboard + /metrics, bridge /metrics, SDK processor /metrics
EXPOSE 6066 9108 9200

CMD ["frame-orchestrator", "--help"]
