# syntax=docker/dockerfile:1
# One image for every Frame Buffer v2 service: `docker run IMAGE worker|bridge|processor ...`.
# docker-compose and the Kubernetes example pick the service by the subcommand and configure it
# only through environment variables.
#
# Two stages: `build` makes a venv at /opt/venv, `runtime` copies only that venv (no compiler
# caches, no pip cache, no sources besides the installed packages).
# Layers, from the least to the most often changed:
#   1. the dependencies, from the pyproject files and constraints.txt alone;
#   2. the code, which is installed with --no-deps: a code edit reinstalls nothing else.

FROM python:3.11-slim AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /src

# --- 1. dependencies: only these files key the layer ----------------------------------------
# Each distribution's pyproject.toml goes here: the orchestrator's and the SDK's.
COPY constraints.txt deploy/docker/pyproject_requirements.py ./
COPY pyproject.toml ./
COPY sdk/pyproject.toml ./sdk/
RUN python pyproject_requirements.py $(find . -name pyproject.toml | sort) > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt

# --- 2. the code: the one list of what the image holds --------------------------------------
COPY README.md ./
COPY sdk ./sdk
COPY core ./core
COPY app ./app
COPY devtools ./devtools
COPY agents ./agents
COPY tables ./tables
COPY bridge ./bridge
COPY sample_processors ./sample_processors
COPY bench ./bench
COPY migrate ./migrate
COPY relay ./relay
COPY capture ./capture
# Every copied distribution (a directory with a pyproject.toml) is installed; dependencies are
# already in place from layer 1, so nothing is resolved or downloaded here.
RUN pip install --no-deps --no-build-isolation --constraint constraints.txt \
        $(find . -maxdepth 2 -name pyproject.toml -printf '%h ') \
    && pip check


FROM python:3.11-slim AS runtime

# DATA_DIR: RocksDB table stores of a worker; docker-compose mounts a volume there, Kubernetes a PVC.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data

RUN useradd --create-home --uid 10001 frames \
    && mkdir -p /data \
    && chown frames /data

COPY --from=build /opt/venv /opt/venv

USER 10001
WORKDIR /home/frames

# worker web API + dashboard + /metrics, bridge /metrics, SDK processor /metrics
EXPOSE 6066 9108 9200

ENTRYPOINT ["frame-orchestrator"]
CMD ["--help"]
