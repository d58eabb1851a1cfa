#!/usr/bin/env bash
# GPU check for a lent CUDA machine (H100/H200, no network), under 8 minutes in all:
#   1. the GPU; 2. the image's dependencies from its lock file (the part the machine lacks, carried,
#   hash-checked when it was installed) and every locked version compared with what runs; 3. cuBLAS;
#   4. CTranslate2 on CUDA, float16 and int8_float16, random-weight Whisper base and large-v3 built there
#   from their configurations, batch 1-64 at 10 s and 30 s contexts: windows/s, files/s, audio-hours per
#   GPU-hour, GPU memory; 5. a lid-dask run end to end through a SQLite ledger on a LocalCUDACluster;
#   6. dask-cuda's worker sees its GPU. A compact summary comes last.
#
#   here:    bash benchmarks/gpu_prepare.sh           # the lock's packages the device lacks -> benchmarks/out/gpu-carry
#   device:  bash benchmarks/gpu_check.sh              # carry benchmarks/out/gpu-carry; timeout_s=560
#   no GPU:  bash benchmarks/gpu_check.sh --cpu-smoke  # every step but the CUDA calls, tiny, on CPU
#
# Each step runs under `timeout`; models are built once into $WORKDIR. Results: $OUT (the device tool's
# folder) or benchmarks/out/gpu: gpu.txt, lock_check.json, gpu_throughput.json, e2e.json,
# dask_cuda_check.json, summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
OUT=${OUT:-benchmarks/out/gpu}
WORKDIR=${WORKDIR:-/tmp/lid-gpu-models}
LOCK=${LOCK:-requirements/image.lock}  # the image's lock file (scripts/lock-image.sh)
CARRY=${CARRY:-benchmarks/out/gpu-carry}
SITE=${SITE:-/tmp/lid-gpu-site}
PY=${PYTHON:-python3}
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STATUS=()
note() { STATUS+=("$1"); echo "--- $1"; }
elapsed() { echo $(( SECONDS - START )); }

if [ $SMOKE = 1 ]; then
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
    # It builds the models with torch and transformers, which the demo's .venv (lid-dask[bundled]) lacks.
    "$PY" -c "import torch, transformers" 2>/dev/null || {
        echo "FAIL: --cpu-smoke needs torch and transformers in $PY: $PY -m pip install -e '.[transformers]'" \
             "(scripts/test.sh installs them)" >&2
        exit 2
    }
    MODE=(--cpu-smoke)
    note "CPU smoke: every step but the CUDA calls (tiny models, CPU, int8)"
else
    MODE=()
    # 1. A GPU, or a clear failure.
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "FAIL: no NVIDIA GPU here (nvidia-smi missing or it lists no device). This check needs a CUDA" >&2
        echo "machine; 'bash benchmarks/gpu_check.sh --cpu-smoke' runs its non-GPU parts on CPU." >&2
        exit 2
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
"$PY" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" \
    || { echo "FAIL: $PY lacks torch/transformers (needed to build the random-weight models)" >&2; exit 2; }

# 2. The image's dependencies: the carried part of the lock, then every locked version against what runs.
#    (The CPU smoke unpacks a carry if there is one, but runs on its own environment: a carry is for
#    CPython 3.12 on x86-64; it checks the carry's versions against the lock, not its binaries.)
CARRIED_SITE=
if [ -f "$CARRY/site.tar.xz" ]; then
    rm -rf "$SITE" && mkdir -p "$SITE"
    if timeout 120 "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
            "$CARRY/site.tar.xz" "$SITE"; then
        CARRIED_SITE="$SITE/site"
        [ $SMOKE = 0 ] && export PYTHONPATH="$CARRIED_SITE${PYTHONPATH:+:$PYTHONPATH}"
        note "unpacked the carried part of the lock ($(grep -c '==' "$CARRY/carry.lock") packages, installed with --require-hashes by gpu_prepare.sh) in $(elapsed) s"
    else
        note "FAILED to unpack $CARRY/site.tar.xz"
    fi
elif [ $SMOKE = 0 ]; then
    note "FAILED: no $CARRY/site.tar.xz (run benchmarks/gpu_prepare.sh here first and carry $CARRY)"
fi
if [ $SMOKE = 1 ]; then  # what gpu_prepare.sh does before its (networked) install: the lock's part for the device
    timeout 30 "$PY" -m benchmarks.gpu_throughput --lock-subset "ctranslate2 av faster-whisper dask distributed dask-cuda" \
        --lock "$LOCK" --out "$OUT/carry-smoke.lock" && note "lock subset: $(grep -c -- '--hash=' "$OUT/carry-smoke.lock") hashes"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lid_dask for the e2e step's worker processes
if [ -f "$LOCK" ]; then
    PYTHONPATH="${CARRIED_SITE:+$CARRIED_SITE:}$PYTHONPATH" timeout 60 "$PY" -m benchmarks.gpu_throughput \
        --lock-check "$LOCK" --carried "$CARRY/carry.lock" --out "$OUT" | tee "$OUT/lock_check.txt"
    note "lock check: exit ${PIPESTATUS[0]}"
else
    note "no lock file at $LOCK (set LOCK=...): versions not compared"
fi
"$PY" -c "import ctranslate2; print('ctranslate2', ctranslate2.__version__)" \
    || { echo "FAIL: CTranslate2 cannot be imported; see above" >&2; exit 2; }

# 3. CTranslate2 4.x wheels load cuBLAS 12 (libcublas.so.12) at run time (the image's CUDA 12.8 base
#    has it). Use one if the machine has it; else (a CUDA 13 machine) try a shim that points the
#    CUDA 12 names at cuBLAS 13, and say so.
SHIM=no
if [ $SMOKE = 0 ] && ! "$PY" -c "import ctypes; ctypes.CDLL('libcublas.so.12')" 2>/dev/null; then
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
        note "WARNING: no cuBLAS 12 on this machine; libcublas.so.12 -> cuBLAS 13 shim ($dir). Not a supported setup: the image has CUDA 12 cuBLAS for ctranslate2 4.8.5"
    else
        note "FAIL: no cuBLAS found; CTranslate2 cannot use the GPU"
    fi
fi
[ $SMOKE = 0 ] && "$PY" -c "import ctranslate2; n = ctranslate2.get_cuda_device_count(); print('ctranslate2 CUDA devices:', n, sorted(ctranslate2.get_supported_compute_types('cuda')) if n else '')"

# 4. Throughput. The whole script stays under 8 minutes: this step ends by 290 s, leaving 120 s for the
#    end-to-end run, 60 s for the dask-cuda check and the summary.
left=$(( 290 - $(elapsed) ))
[ $SMOKE = 1 ] && left=300
timeout $(( left > 60 ? left : 60 )) "$PY" -m benchmarks.gpu_throughput "${MODE[@]}" --out "$OUT" --workdir "$WORKDIR" \
    --min-time 0.6 --budget-s $(( left > 100 ? left - 40 : 60 )) 2>&1 | grep -v "^\[.*warning\]" | tee "$OUT/throughput.log"
rc_tp=${PIPESTATUS[0]}
note "throughput: exit $rc_tp ($(elapsed) s)"

# 5. lid-dask end to end: a run through a SQLite ledger on the cluster lid-dask starts here (a
#    LocalCUDACluster on a GPU machine), with the random-weight base model.
timeout 110 "$PY" -m benchmarks.gpu_throughput "${MODE[@]}" --e2e --out "$OUT" --workdir "$WORKDIR" 2>&1 \
    | grep -v "^\[.*warning\]" | tail -4
rc_e2e=${PIPESTATUS[0]}
note "lid-dask run end to end: exit $rc_e2e ($(elapsed) s)"

# 6. dask-cuda: LocalCUDACluster starts and a task runs CTranslate2 on its GPU worker (fails without one).
dask_workdir=$WORKDIR
[ $SMOKE = 1 ] && dask_workdir=$WORKDIR-cpu
timeout 60 "$PY" -m benchmarks.gpu_throughput --dask-check --out "$OUT" --workdir "$dask_workdir" 2>&1 | tail -3
rc_dask=${PIPESTATUS[0]}
note "dask-cuda check: exit $rc_dask ($(elapsed) s)"

{
echo
echo "================ summary ($(elapsed) s) ================"
[ -f "$OUT/gpu.txt" ] && head -1 "$OUT/gpu.txt"
echo "cuBLAS shim: $SHIM"
for s in "${STATUS[@]}"; do echo "- $s"; done
"$PY" - "$OUT" "$SMOKE" <<'EOF'
import json, sys, pathlib
out, smoke = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
lock = out / "lock_check.txt"
if lock.exists():
    print(lock.read_text().strip()[:1500])
tp = out / ("gpu_throughput_cpu_smoke.json" if smoke else "gpu_throughput.json")
if tp.exists():
    print(json.loads(tp.read_text())["table"])
e2e = out / ("e2e_cpu_smoke.json" if smoke else "e2e.json")
if e2e.exists():
    r = json.loads(e2e.read_text())
    print(f"e2e: {r['cluster']} ({r['gpus']} GPU), {r['model']} model, {r['files']} files: {r['counts']}, "
          f"{r['answered']} answered, {r['files_per_s']} files/s over {r['run_s']} s after a {r['cluster_start_s']} s "
          f"cluster start; worker CUDA {r['worker_cuda']}; ok={r['ok']}")
dc = out / "dask_cuda_check.json"
if dc.exists():
    print("dask-cuda:", dc.read_text().replace("\n", " "))
EOF
} | tee "$OUT/summary.txt"
if [ $SMOKE = 1 ]; then
    echo "cpu smoke: throughput rc=$rc_tp, e2e rc=$rc_e2e; the dask-cuda check is expected to fail without a GPU (rc=$rc_dask)"
    [ "$rc_tp" = 0 ] && [ "$rc_e2e" = 0 ]
else
    [ "$rc_tp" = 0 ] && [ "$rc_e2e" = 0 ] && [ "$rc_dask" = 0 ]
fi
