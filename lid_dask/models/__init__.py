"""Model registry: spec strings to loaded backends, one instance per process.

Built-in backends and plug-ins register under the ``lid_dask.models`` entry-point group, so a
third-party package can add a model without touching lid-dask.
"""

from __future__ import annotations

import difflib
import functools
import logging
import threading
from importlib.metadata import entry_points

from lid_dask.models.base import Backend, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MODEL = "whisper-ct2:bundled"
ENTRY_POINT_GROUP = "lid_dask.models"

_BUILTIN = {
    "whisper-ct2": "lid_dask.models.whisper_ct2:WhisperCT2",
    "whisper-hf": "lid_dask.models.whisper_hf:WhisperHF",
    "speechbrain": "lid_dask.models.speechbrain:SpeechBrainLID",
    "null": "lid_dask.models.null:NullBackend",
}
_lock = threading.Lock()
_registered: dict[str, str | type[Backend]] = {}


def register_backend(name: str, backend: str | type[Backend]) -> None:
    """Add a backend at run time (a class, or ``module:Class``), e.g. from a notebook."""
    _registered[name] = backend


def available_backends() -> dict[str, str | type[Backend]]:
    """Backend name -> ``module:Class``, built-ins first, then plug-ins."""
    found = {**_BUILTIN, **_registered}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def _backend_class(name: str) -> type[Backend]:
    target = available_backends().get(name)
    if target is None:
        raise ValueError(f"unknown model backend {name!r}; available: {', '.join(sorted(available_backends()))}")
    if isinstance(target, type):
        return target
    module_name, _, class_name = target.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)


def check_spec(spec: ModelSpec) -> type[Backend] | None:
    """The backend class of `spec`, after checking that its options are ones the backend takes.

    None when the backend cannot be imported here (an orchestrator without, say, torch can
    still run models its workers have): then only the name was checked.
    """
    if spec.backend not in available_backends():
        raise ValueError(f"unknown model backend {spec.backend!r}{_did_you_mean(spec.backend, available_backends())}; "
                         f"available: {', '.join(sorted(available_backends()))} (a plug-in backend must be "
                         f"installed where the run is started as well as on the workers)")
    try:
        backend = _backend_class(spec.backend)
    except ImportError as exc:
        log.warning("cannot check model %s here (%s); its workers must have what it needs", spec, exc)
        return None
    unknown = sorted(set(spec.options) - backend.options) if backend.options is not None else []
    if unknown:
        known = ", ".join(sorted(backend.options)) or "none"
        raise ValueError(f"unknown option {unknown[0]!r} for {spec.backend}{_did_you_mean(unknown[0], backend.options)} "
                         f"in model spec {str(spec)!r}; its options: {known}")
    return backend


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when CTranslate2 sees a GPU, else CPU."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


@functools.lru_cache(maxsize=None)
def _load(spec: ModelSpec, device: str) -> Backend:
    return _backend_class(spec.backend)(spec, device=device)


def load_model(spec: str | ModelSpec, device: str = "auto") -> Backend:
    """Load (once per process) the model for `spec` on `device`."""
    if isinstance(spec, str):
        spec = ModelSpec.parse(spec)
    with _lock:
        return _load(spec, resolve_device(device))


__all__ = ["DEFAULT_MODEL", "Backend", "ModelSpec", "available_backends", "check_spec", "load_model", "register_backend"]
