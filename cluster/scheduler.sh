#!/usr/bin/env bash
# Start the Dask scheduler (an example: `lid-dask scheduler --help` has the options).
# Usage: CERTS=/path/to/certs [HOST=0.0.0.0] [PORT=8786] [DASHBOARD_HOST=127.0.0.1] [DASHBOARD_PORT=8787] \
#   cluster/scheduler.sh [more lid-dask scheduler options]
set -euo pipefail
exec lid-dask scheduler --certs "${CERTS:?set CERTS to the folder made by lid-dask certs}" \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8786}" \
  --dashboard-address "${DASHBOARD_HOST:-127.0.0.1}:${DASHBOARD_PORT:-8787}" "$@"
