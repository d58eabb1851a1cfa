#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI) before a GPU check: fetches the wheels the lent GPU machine
# lacks (it has PyTorch, transformers and tokenizers, but no CTranslate2 or Dask, and no network)
# into benchmarks/out/gpu-carry/, which .gitignore keeps out of commits (benchmarks/out/).
# About 46 MB; the device tool carries at most 64 MiB with the working tree. Then, on the device:
#   run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/out/gpu-carry"], timeout_s=560)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=benchmarks/out/gpu-carry
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DEST"
# The device runs CPython 3.12 on x86-64 (see the device notes); versions match pyproject.toml.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform any \
    -d "$DEST" \
    ctranslate2==4.8.5 \
    dask==2026.7.1 distributed==2026.7.1 dask-cuda==26.10.0 "rapids-dask-dependency==26.10.*" \
    partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0 tornado==6.6.1
ls -la "$DEST"
du -sh "$DEST"
