#!/usr/bin/env bash
# Start the Dask scheduler with TLS (run on a host the workers and the orchestrator can reach).
# Usage: CERTS=/path/to/certs [HOST=0.0.0.0] [PORT=8786] cluster/scheduler.sh
# The lid_dask.security preload holds every certificate to its role (cluster/README.md).
set -euo pipefail
certs=${CERTS:?set CERTS to the folder made by make-certs.sh}
# allowed-failures=1: a batch that killed two workers raises KilledWorker, and the orchestrator
# splits it to find the poison file (see lid_dask/orchestrator.py).
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1
exec dask scheduler --protocol tls --host "${HOST:-0.0.0.0}" --port "${PORT:-8786}" --dashboard-address ":${DASHBOARD_PORT:-8787}" \
  --preload lid_dask.security \
  --tls-ca-file "$certs/ca.pem" --tls-cert "$certs/scheduler.pem" --tls-key "$certs/scheduler.key"
