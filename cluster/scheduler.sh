#!/usr/bin/env bash
# Start the Dask scheduler with TLS (run on a host the workers and the orchestrator can reach).
# Usage: CERTS=/path/to/certs [HOST=0.0.0.0] [PORT=8786] [DASHBOARD_HOST=127.0.0.1] [DASHBOARD_PORT=8787] \
#   cluster/scheduler.sh
# The lid_dask.security preload holds every certificate to its role (cluster/README.md);
# lid_dask.monitor adds the model-behaviour page and metrics (cluster/monitoring/README.md). The
# dashboard has no authentication, so it answers on loopback only: reach it through an SSH tunnel.
set -euo pipefail
certs=${CERTS:?set CERTS to the folder made by make-certs.sh}
# allowed-failures=1: a batch that killed two workers raises KilledWorker, and the orchestrator
# splits it to find the poison file (see lid_dask/orchestrator.py).
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1
# Dashboard routes: Dask's defaults less distributed.http.proxy (it forwards requests to whatever
# host and port a worker claims for its dashboard); distributed.http.scheduler.api (unauthenticated
# POSTs such as retire_workers) stays out.
export DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES="['distributed.http.scheduler.prometheus', \
'distributed.http.scheduler.info', 'distributed.http.scheduler.json', 'distributed.http.health', \
'distributed.http.statics']"
exec dask scheduler --protocol tls --host "${HOST:-0.0.0.0}" --port "${PORT:-8786}" \
  --dashboard-address "${DASHBOARD_HOST:-127.0.0.1}:${DASHBOARD_PORT:-8787}" --no-jupyter \
  --preload lid_dask.security --preload lid_dask.monitor \
  --tls-ca-file "$certs/ca.pem" --tls-cert "$certs/scheduler.pem" --tls-key "$certs/scheduler.key"
