#!/usr/bin/env bash
# Start one lid-dask worker (an example: `lid-dask worker --help` has the options; a container runs
# `lid-dask worker` itself, with its certificate in LID_DASK_TLS_CA, _CERT and _KEY).
# Usage: SCHEDULER=tls://host:8786 CERTS=/certs cluster/worker.sh [more lid-dask worker options]
set -euo pipefail
exec lid-dask worker "${SCHEDULER:?set SCHEDULER=tls://host:8786}" \
  --certs "${CERTS:?set CERTS to a folder with ca.pem, worker.pem, worker.key}" "$@"
