#!/usr/bin/env bash
# Run HERE (a machine that reaches the package registry) before a GPU check. The lent GPU machine has
# PyTorch, transformers, tokenizers and most of the image's smaller dependencies (the device notes list
# them), but no CTranslate2, PyAV, Dask, dask-cuda or SQLAlchemy, and no network. This installs those of
# the image's lock file ($LOCK), hash-checked (--require-hashes), for CPython 3.12 on x86-64, and packs
# them into benchmarks/out/gpu-carry/ (git-ignored: benchmarks/out/), which the device tool carries:
#   run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/out/gpu-carry"], timeout_s=560)
# The whole working tree and the carry travel within 64 MiB; this stops if the carry would not fit.
#
# The only change to an installed file: CTranslate2's Python extension ships with its debug information
# (69 MB; 1.8 MB without), which is stripped (strip --strip-debug: no code changes) so that everything
# fits. The manifest (carry.json) says so, with each package's version.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=${LOCK:-requirements/image.lock}  # the image's lock file (scripts/lock-image.sh writes it)
DEST=benchmarks/out/gpu-carry
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
# The lock's packages that the check needs and the device lacks (their own dependencies it has).
PACKAGES=${PACKAGES:-"ctranslate2 av faster-whisper dask distributed dask-cuda rapids-dask-dependency partd locket
    tblib zict tornado sqlalchemy alembic mako langcodes language-data marisa-trie bokeh xyzservices"}
LIMIT_MIB=${LIMIT_MIB:-64}
[ -f "$LOCK" ] || { echo "FAIL: no lock file $LOCK (make it with: bash scripts/lock-image.sh; or set LOCK=...)" >&2; exit 2; }

STAGE=$(mktemp -d /tmp/lid-gpu-carry.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
rm -rf "$DEST" && mkdir -p "$DEST"
# shellcheck disable=SC2086
"$PY" -m benchmarks.gpu_throughput --lock-subset "$(echo $PACKAGES)" --lock "$LOCK" --out "$DEST/carry.lock"
"$PY" -m pip install -q --no-deps --no-compile --only-binary=:all: --require-hashes \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux_2_5_x86_64 --platform any \
    --target "$STAGE/site" -r "$DEST/carry.lock"
stripped=()
for ext in "$STAGE"/site/ctranslate2/_ext*.so; do
    strip --strip-debug "$ext" && stripped+=("${ext#"$STAGE"/site/}")
done
"$PY" - "$STAGE/site" "$DEST" "$LOCK" "${stripped[@]}" <<'EOF'
import json, lzma, sys, tarfile
from importlib import metadata
from pathlib import Path

site, dest, lock, stripped = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
versions = {d.metadata["Name"]: d.version for d in metadata.distributions(path=[str(site)])}
(dest / "carry.json").write_text(json.dumps({"lock": lock, "packages": versions, "debug_info_stripped": stripped},
                                            indent=2))
with tarfile.open(dest / "site.tar.xz", "w:xz", preset=6) as tar:
    tar.add(site, arcname="site")
print(f"{len(versions)} packages from {lock}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
EOF
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry_bytes=$(du -cb "$DEST" | tail -1 | cut -f1)
echo "carry $(( carry_bytes / 1048576 )) MiB + working tree $(( tree_bytes / 1048576 )) MiB (limit ${LIMIT_MIB} MiB)"
if [ $(( carry_bytes + tree_bytes )) -gt $(( LIMIT_MIB * 1048576 )) ]; then
    echo "FAIL: the carry and the working tree exceed ${LIMIT_MIB} MiB; drop packages from PACKAGES" >&2
    exit 3
fi
ls -la "$DEST"
