#!/usr/bin/env bash
# Regenerate requirements/image.lock, the Docker image's hash-locked dependencies, from pyproject.toml:
# the image's extras (bundled, s3, http, postgres, gpu; no torch) plus the build backend, for the
# image's interpreter (Ubuntu 24.04's Python 3.12) on Linux x86_64 (glibc 2.39).
#
#   bash scripts/lock-image.sh              # keeps the versions already locked where pyproject allows them
#   bash scripts/lock-image.sh --upgrade    # newest versions pyproject allows
#
# Needs uv (the dev extra pins it) and the package registry; tests/test_image.py checks that the lock,
# pyproject.toml and environment.yml agree.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
exec "$UV" pip compile pyproject.toml requirements/image-build.in \
    --extra bundled --extra s3 --extra http --extra postgres --extra gpu \
    --python-version 3.12 --python-platform x86_64-manylinux_2_39 \
    --generate-hashes --custom-compile-command "bash scripts/lock-image.sh" \
    --output-file requirements/image.lock "$@"
