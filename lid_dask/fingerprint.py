"""Environment fingerprints: what makes two workers give the same answer for the same file.

Every worker reports one (package versions, Python, CUDA, model checksums); the run keeps the
first as its reference, so a worker from a drifted image is flagged (or refused) and visible in
the ledger, not silently mixed into the results.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata

PACKAGES = ("lid-dask", "ctranslate2", "faster-whisper", "av", "numpy", "onnxruntime", "tokenizers",
            "torch", "transformers", "speechbrain", "dask", "distributed")


def environment(models: list[dict] | None = None) -> dict:
    """This process's fingerprint; `models` are the loaded backends' own fingerprints."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "packages": versions, "cuda": _cuda(), "models": models or []}


def digest(fingerprint: dict) -> str:
    """Short stable hash of a fingerprint, for comparing workers at a glance."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(reference: dict, other: dict) -> list[str]:
    """Human-readable list of what differs between two fingerprints.

    Both are compared in JSON shape: the run's reference comes back from the ledger as JSON (lists)
    while a live worker's arrives through msgpack (tuples), and that alone is no drift.
    """
    return _differences(json.loads(json.dumps(reference, default=str)), json.loads(json.dumps(other, default=str)))


def _differences(reference: dict, other: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(reference) | set(other)):
        a, b = reference.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _cuda() -> dict:
    try:
        import ctranslate2

        devices = ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - no CUDA runtime at all
        devices = 0
    return {"available": devices > 0}
