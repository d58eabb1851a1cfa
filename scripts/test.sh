#!/usr/bin/env bash
# Install everything the tests need (Debian packages, CPU PyTorch, the project with its dev extra)
# and run the whole test suite, slow tests included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch==2.13.0 is the CPU build (pinned in the transformers extra too); see README "SpeechBrain".
.venv/bin/pip install -q "torch==2.13.0" -e ".[dev]"
.venv/bin/python -m pytest "$@"

# SpeechBrain needs torchaudio built for the same torch; it gets its own environment (README).
if [ "${LID_DASK_SKIP_SPEECHBRAIN:-0}" != 1 ]; then
  python3 -m venv .venv-speechbrain
  .venv-speechbrain/bin/pip install -q --upgrade pip
  .venv-speechbrain/bin/pip install -q "torch==2.9.1" "torchaudio==2.9.1" -e ".[speechbrain,bundled,test]"
  .venv-speechbrain/bin/python -m pytest tests/models -m speechbrain "$@"
fi
