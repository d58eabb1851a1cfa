#!/usr/bin/env bash
# Start one lid-dask GPU worker (the container command on SaladCloud). It only connects out:
# results travel back as events over its own connection, so it needs no inbound port.
# Usage: SCHEDULER=tls://host:8786 CERTS=/certs cluster/worker.sh [extra dask worker options]
# lid_dask.security comes first among the preloads: the worker and its nanny serve other worker
# certificates only what a peer worker needs (cluster/README.md).
set -euo pipefail
certs=${CERTS:?set CERTS to a folder with ca.pem, worker.pem, worker.key}
export LID_DASK_MODELS=${LID_DASK_MODELS:-whisper-ct2:bundled}  # warmed up by the preload
exec dask worker "${SCHEDULER:?set SCHEDULER=tls://host:8786}" \
  --nthreads 1 --nworkers 1 --resources "GPU=1" \
  --preload lid_dask.security --preload lid_dask.worker \
  --preload-nanny lid_dask.security --preload-nanny lid_dask.nanny \
  --no-dashboard \
  --tls-ca-file "$certs/ca.pem" --tls-cert "$certs/worker.pem" --tls-key "$certs/worker.key" \
  --name "${SALAD_MACHINE_ID:-$(hostname)}" "$@"
