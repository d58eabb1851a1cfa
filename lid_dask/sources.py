"""Turn what a user typed (files, folders, globs, URLs) into audio file URLs, lazily."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fsspec.core import url_to_fs

AUDIO_EXTENSIONS = frozenset(
    "wav flac mp3 ogg oga opus m4a aac mp4 m4v mov mkv webm wma aiff aif au amr ac3 mka mpga 3gp".split()
)


def is_audio_name(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS if "." in path.rsplit("/", 1)[-1] else False


def expand_sources(sources: str | Iterable[str], storage_options: dict | None = None) -> Iterator[str]:
    """Yield file URLs: a folder gives its audio files (recursively), a glob its matches.

    Anything else is passed through untouched, even if it does not exist: the engine reports a
    missing file as that file's error instead of failing the whole call.
    """
    if isinstance(sources, str):
        sources = [sources]
    for source in sources:
        source = str(source)
        fs, path = url_to_fs(source, **(storage_options or {}))
        if any(char in path for char in "*?["):
            matches = sorted(fs.glob(path))
            yield from (_unstrip(fs, source, m) for m in matches if not fs.isdir(m))
        elif _safe_isdir(fs, path):
            for found in sorted(fs.find(path)):
                if is_audio_name(found):
                    yield _unstrip(fs, source, found)
        else:
            yield source


def _safe_isdir(fs, path: str) -> bool:
    try:
        return fs.isdir(path)
    except Exception:  # noqa: BLE001 - an unreachable source is reported per file later
        return False


def _unstrip(fs, original: str, path: str) -> str:
    """Give back a URL with the protocol the user used (fsspec strips it)."""
    if "://" in original:
        return fs.unstrip_protocol(path)
    return path
