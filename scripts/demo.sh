#!/usr/bin/env bash
# Install lid-dask with its embedded defaults and identify the bundled sample audio.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[bundled]"
.venv/bin/lid-dask identify lid_dask/samples "$@"
