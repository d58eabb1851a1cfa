#!/usr/bin/env bash
# GPU check for a lent CUDA machine (H100/H200, no network): Whisper LID throughput with
# CTranslate2 on random-weight models of the real sizes, plus a dask-cuda LocalCUDACluster task.
#
#   here:    bash benchmarks/gpu_prepare.sh           # wheels the device lacks -> benchmarks/out/gpu-carry
#   device:  bash benchmarks/gpu_check.sh              # carry benchmarks/out/gpu-carry; < 8 minutes
#   no GPU:  bash benchmarks/gpu_check.sh --cpu-smoke  # the model building/conversion/timing, tiny, on CPU
#
# Idempotent (models are built once into $WORKDIR), time-boxed (each step under `timeout`), and it
# prints a compact summary at the end. Results: $OUT (the device tool's folder) or benchmarks/out/gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
OUT=${OUT:-benchmarks/out/gpu}
WORKDIR=${WORKDIR:-/tmp/lid-gpu-models}
CARRY=benchmarks/out/gpu-carry
SITE=/tmp/lid-gpu-site
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STATUS=()
note() { STATUS+=("$1"); echo "--- $1"; }

if [ "${1:-}" = "--cpu-smoke" ]; then
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
    # It builds the models with torch and transformers, which the demo's .venv (lid-dask[bundled]) lacks.
    "$PY" -c "import torch, transformers" 2>/dev/null || {
        echo "FAIL: --cpu-smoke needs torch and transformers in $PY: $PY -m pip install -e '.[transformers]'" \
             "(scripts/test.sh installs them)" >&2
        exit 2
    }
    timeout 300 "$PY" -m benchmarks.gpu_throughput --cpu-smoke --out "$OUT" --workdir "$WORKDIR"
    rc=$?
    timeout 60 "$PY" -m benchmarks.gpu_throughput --dask-check --out "$OUT" --workdir "$WORKDIR-cpu"
    echo "cpu smoke: throughput rc=$rc; the dask-cuda check is expected to fail without a GPU (rc=$?)"
    exit $rc
fi

# 1. A GPU, or a clear failure.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "FAIL: no NVIDIA GPU here (nvidia-smi missing or it lists no device). This check needs a CUDA" >&2
    echo "machine; 'bash benchmarks/gpu_check.sh --cpu-smoke' runs its non-GPU parts on CPU." >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" \
    || { echo "FAIL: $PY lacks torch/transformers (needed to build the random-weight models)" >&2; exit 2; }

# 2. Packages the image lacks: carried wheels first, else the registry if it answers, else fail.
missing=()
"$PY" -c "import ctranslate2" 2>/dev/null || missing+=(ctranslate2)
"$PY" -c "import dask_cuda, distributed" 2>/dev/null || missing+=(dask-cuda)
if [ ${#missing[@]} -gt 0 ]; then
    if ls "$CARRY"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$CARRY"/*.whl \
            && note "installed carried wheels for: ${missing[*]}" || note "FAILED to install carried wheels"
    else
        timeout 120 "$PY" -m pip install -q --no-cache-dir --target "$SITE" ctranslate2==4.8.5 dask==2026.7.1 \
            distributed==2026.7.1 dask-cuda==26.10.0 \
            && note "installed from the registry: ${missing[*]}" \
            || note "FAILED: ${missing[*]} missing, no carried wheels (run benchmarks/gpu_prepare.sh here first) and no registry"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import ctranslate2; print('ctranslate2', ctranslate2.__version__)" \
    || { echo "FAIL: CTranslate2 cannot be imported; see above" >&2; exit 2; }

# 3. CTranslate2 4.x wheels load cuBLAS 12 (libcublas.so.12) at run time. Use one if the machine
#    has it; else (a CUDA 13 image) try a shim that points the CUDA 12 names at cuBLAS 13, and say so.
SHIM=no
if ! "$PY" -c "import ctypes; ctypes.CDLL('libcublas.so.12')" 2>/dev/null; then
    found=$("$PY" - <<'EOF'
import glob, site, sys
roots = [p for p in sys.path if p] + site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]
for pattern in ("libcublas.so.12", "nvidia/cublas/lib/libcublas.so.12", "nvidia/cu12/lib/libcublas.so.12"):
    for root in roots:
        hits = glob.glob(f"{root}/{pattern}")
        if hits:
            print("12", hits[0]); raise SystemExit
for pattern in ("nvidia/cu13/lib/libcublas.so.13", "nvidia/cublas/lib/libcublas.so.13", "libcublas.so.13",
                "targets/x86_64-linux/lib/libcublas.so.13"):
    for root in roots + ["/usr/local/cuda"]:
        hits = glob.glob(f"{root}/{pattern}")
        if hits:
            print("13", hits[0]); raise SystemExit
EOF
)
    kind=${found%% *}; lib=${found#* }
    if [ "$kind" = "12" ]; then
        export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        note "cuBLAS 12 found at $(dirname "$lib")"
    elif [ "$kind" = "13" ]; then
        shim=/tmp/lid-cublas12-shim; mkdir -p "$shim"; dir=$(dirname "$lib")
        ln -sf "$dir/libcublas.so.13" "$shim/libcublas.so.12"
        ln -sf "$dir/libcublasLt.so.13" "$shim/libcublasLt.so.12"
        export LD_LIBRARY_PATH="$shim:$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        SHIM=yes
        note "WARNING: no cuBLAS 12 on this machine; libcublas.so.12 -> cuBLAS 13 shim ($dir). Not a supported setup: a production image needs CUDA 12 cuBLAS for ctranslate2 4.8.5"
    else
        note "FAIL: no cuBLAS found; CTranslate2 cannot use the GPU"
    fi
fi
"$PY" -c "import ctranslate2; n = ctranslate2.get_cuda_device_count(); print('ctranslate2 CUDA devices:', n, sorted(ctranslate2.get_supported_compute_types('cuda')) if n else '')"

# 4. Throughput (models built once, each cell time-boxed by the script's own budget).
# Whole script < 8 minutes: this step ends by 470 s minus the 100 s kept for step 5.
left=$(( 370 - (SECONDS - START) ))
timeout $(( left > 60 ? left : 60 )) "$PY" -m benchmarks.gpu_throughput --out "$OUT" --workdir "$WORKDIR" \
    --budget-s $(( left > 120 ? left - 40 : 60 )) 2>&1 | grep -v "^\[.*warning\]" | tee "$OUT/throughput.log"
rc_tp=${PIPESTATUS[0]}
note "throughput: exit $rc_tp"

# 5. dask-cuda: LocalCUDACluster starts and a task runs CTranslate2 on its GPU worker.
timeout 100 "$PY" -m benchmarks.gpu_throughput --dask-check --out "$OUT" --workdir "$WORKDIR" 2>&1 | tail -5
rc_dask=${PIPESTATUS[0]}
note "dask-cuda check: exit $rc_dask"

echo
echo "================ summary ($(( SECONDS - START )) s) ================"
head -1 "$OUT/gpu.txt"
echo "cuBLAS shim: $SHIM"
for s in "${STATUS[@]}"; do echo "- $s"; done
"$PY" - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
tp = out / "gpu_throughput.json"
if tp.exists():
    print(json.loads(tp.read_text())["table"])
dc = out / "dask_cuda_check.json"
if dc.exists():
    print("dask-cuda:", dc.read_text().replace("\n", " "))
EOF
[ "$rc_tp" = 0 ] && [ "$rc_dask" = 0 ]
