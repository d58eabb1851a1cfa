"""Storage options split by who may see them: credentials never leave the orchestrator's process.

Workers are third-party hosts and the ledger is shared, so a run stores, and sends to workers,
only the options that say where the audio is (endpoint, region, anonymous access). Credentials
given with the sources are used here, for listing, and nowhere else. A worker reads the audio with
credentials from its own environment: ``LID_DASK_STORAGE_OPTIONS`` (JSON, laid over the run's
options), fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables, or the storage SDK's own
(``AWS_ACCESS_KEY_ID``, ...). Give workers read-only credentials on the audio.
"""

from __future__ import annotations

import json
import os
import re

WORKER_OPTIONS_VARIABLE = "LID_DASK_STORAGE_OPTIONS"

# Option names that hold or carry credentials in fsspec's backends (s3fs key/secret/token,
# gcsfs token, adlfs account_key/sas_token/connection_string/client_secret, HTTP headers).
_SECRET_NAME = re.compile(r"key|secret|token|passw|credential|private|auth|cookie|signature|sas|connection_string",
                          re.IGNORECASE)


def split_secrets(options: dict | None) -> tuple[dict, dict]:
    """(public, secret) storage options. A top-level option is secret if its name looks like a
    credential or it holds one anywhere inside (then the whole option stays here, e.g. a
    `client_kwargs` carrying an access key)."""
    public, secret = {}, {}
    for name, value in (options or {}).items():
        (secret if _holds_secret(name, value) else public)[name] = value
    return public, secret


def _holds_secret(name: str, value) -> bool:
    if _SECRET_NAME.search(str(name)):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(k, v) for k, v in value.items())
    return False


def worker_options(public: dict | None) -> dict | None:
    """The run's public options with the worker's own (``LID_DASK_STORAGE_OPTIONS``) laid over."""
    own = os.environ.get(WORKER_OPTIONS_VARIABLE)
    if not own:
        return public
    try:
        mine = json.loads(own)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{WORKER_OPTIONS_VARIABLE} is not JSON: {exc}") from None
    return {**(public or {}), **mine}


def local_worker_environment(secret: dict) -> dict[str, str]:
    """Environment for worker processes this process starts itself (a local cluster): they may
    hold the credentials it was given, through the variable a remote worker would use."""
    return {WORKER_OPTIONS_VARIABLE: json.dumps(secret)} if secret else {}
