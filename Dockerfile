# One image for every stage: `pipeline worker STAGE` picks the stage at run time.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /app

# Dependency layer: changes only when pyproject.toml does, so code edits rebuild in seconds.
# The CPU build of PyTorch (the default wheel on PyPI for Linux is a multi-GB CUDA build).
COPY pyproject.toml README.md ./
RUN mkdir framework stages && touch framework/__init__.py stages/__init__.py \
 && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install '.[ai]' \
 && pip uninstall -y docpipe

COPY framework ./framework
COPY stages ./stages
COPY pipeline.yaml ./
RUN pip install --no-deps . \
 && useradd --create-home --uid 10001 pipeline
USER pipeline

# Workers exit 0 on SIGTERM after draining; compose waits stop_grace_period for that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pipeline"]
CMD ["worker", "--all"]
