"""Turn what a user names (files, folders, globs, URLs, manifests, S3 Inventory) into audio URLs.

Everything is a generator: an S3 prefix is listed page by page and a manifest read in chunks,
so registering millions of files never holds them all in memory. Entries carry the size when
the listing gives it, which lets the orchestrator size batches by bytes.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus, urlsplit

import fsspec
from fsspec.asyn import async_gen_wrapper
from fsspec.core import split_protocol, url_to_fs

from lid_dask.errors import ErrorKind, SourceError, classify_storage_error

if TYPE_CHECKING:
    import pandas as pd

AUDIO_EXTENSIONS = frozenset(
    "wav flac mp3 ogg oga opus m4a aac mp4 m4v mov mkv webm wma aiff aif au amr ac3 mka mpga 3gp".split()
)
MANIFEST_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".tsv")
URI_COLUMNS = ("uri", "url", "path", "file", "filename")
_MANIFEST_CHUNK = 100_000
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})

Entry = tuple[str, int | None]  # (uri, size in bytes if known)


def is_audio_name(path: str) -> bool:
    name = _url_path(path).rsplit("/", 1)[-1]
    return "." in name and name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS


def expand_sources(sources: str | Iterable[str], storage_options: dict | None = None,
                   allowed_roots: Iterable[str] = ()) -> Iterator[str]:
    """Yield file URLs only (see `iter_entries`)."""
    return (uri for uri, _ in iter_entries(sources, storage_options, allowed_roots))


def iter_entries(sources: str | Iterable[str], storage_options: dict | None = None,
                 allowed_roots: Iterable[str] = ()) -> Iterator[Entry]:
    """Yield (uri, size) for every audio file the sources name.

    A name is what exists under it: a folder or prefix gives its audio files recursively, a
    manifest (CSV, TSV or Parquet with a uri/url/path column) its rows, an S3 Inventory
    ``manifest.json`` the objects of its data files, any other file itself. Only a name under
    which nothing exists is a glob pattern (``take[12].wav`` is that file if it exists). A name
    with an audio extension and no glob character is passed through untouched, without asking
    storage (a list of object URLs must not cost a request each): a missing file is that file's
    error, not the whole run's.

    A manifest may only name files under the allowed roots: the sources' own (for a URL its
    scheme and bucket or host, for a local name its folder) plus `allowed_roots` (such as
    ``"s3://other-bucket"``, ``"https://cdn.example.org"``, ``"/data/audio"``; ``"s3://"`` allows
    every bucket). A manifest naming anything else is refused whole, before any of its rows is
    returned, with a `SourceError` naming the row (the manifest is read twice for that).
    A source that cannot be read (no credentials, no such bucket, access denied) or names
    nothing at all is a `SourceError` too, never a file that fails later.
    """
    sources = [sources] if isinstance(sources, str) else [str(source) for source in sources]
    roots = _Roots(sources, allowed_roots)
    for source in sources:
        try:
            yield from _source_entries(source, storage_options, roots)
        except SourceError:
            raise
        except Exception as exc:
            error = classify_storage_error(exc)
            if error is None:
                raise
            raise SourceError(f"cannot read {source}: {error}") from exc


def _source_entries(source: str, storage_options: dict | None, roots: _Roots) -> Iterator[Entry]:
    if is_audio_name(source) and not _is_glob(source):
        yield source, None  # a list of object URLs must not cost a storage request per URL
        return
    fs, path = url_to_fs(source, **(storage_options or {}))
    info = _lookup(fs, path)
    if info is None and _is_glob(path):
        yield from _glob(fs, path, source)
    elif info is None:
        raise _nothing_at(fs, path, source)
    elif info["type"] == "directory":
        yield from _walk(fs, path, source)
    elif path.endswith("manifest.json"):
        yield from _s3_inventory(fs, path, source, storage_options, roots)
    elif path.lower().endswith(MANIFEST_SUFFIXES):
        yield from _manifest(fs, path, source, roots)
    else:
        yield source, info.get("size")


def _lookup(fs, path: str) -> dict | None:
    """fsspec's info on `path`, None when nothing is there."""
    try:
        return fs.info(path)
    except Exception as exc:
        error = classify_storage_error(exc)
        if error is not None and error.kind is ErrorKind.NOT_FOUND:
            return None
        raise


def _nothing_at(fs, path: str, source: str) -> SourceError:
    """The error for a name under which nothing exists, saying so when the bucket itself is missing."""
    bucket = path.split("/", 1)[0]
    if _OBJECT_STORES & set(_protocols(fs)) and bucket != path and _lookup(fs, bucket) is None:
        return SourceError(f"{source}: no such bucket {bucket!r} (or these credentials cannot see it)")
    return SourceError(f"{source}: no such file, folder or prefix")


def _is_glob(name: str) -> bool:
    return any(char in _url_path(name) for char in "*?[")


def _url_path(name: str) -> str:
    """The part of `name` that names a file: an HTTP(S) URL's query is not part of it."""
    return urlsplit(name).path if name.startswith(("http://", "https://")) else name


def _glob(fs, path: str, source: str) -> Iterator[Entry]:
    matches = sorted(fs.glob(path, detail=True).items())
    if not matches:
        raise SourceError(f"{source}: no file has this name, and as a glob pattern it matches nothing")
    for match, info in matches:
        if info.get("type") != "directory":
            yield _url(fs, source, match), info.get("size")


def _walk(fs, path: str, source: str) -> Iterator[Entry]:
    if "s3" in _protocols(fs):  # page by page: a prefix may hold millions of keys
        # s3fs's private _iterdir is the only listing that does not build the whole list first:
        # find/ls/walk (public) collect every key of a folder before returning the first.
        bucket, _, prefix = path.partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for info in async_gen_wrapper(fs._iterdir, obj=fs)(bucket, delimiter="", prefix=prefix):
            if info.get("type") == "file" and is_audio_name(info["name"]):
                yield _url(fs, source, info["name"]), info.get("size")
    else:
        for found, info in sorted(fs.find(path, detail=True).items()):
            if is_audio_name(found):
                yield _url(fs, source, found), info.get("size")


def _manifest(fs, path: str, source: str, roots: _Roots) -> Iterator[Entry]:
    """Rows of a CSV/TSV/Parquet manifest; relative paths are relative to the manifest's folder.

    Read twice: every row is checked against the allowed roots before the first is returned, so
    a refused manifest registers nothing.
    """
    for row, (uri, _) in enumerate(_manifest_rows(fs, path, source), 1):
        if not roots.allow(uri):
            raise SourceError(f"manifest {source}, row {row}: {uri} is outside the allowed roots "
                              f"({roots}); allow it with allowed_roots (lid-dask --allow-root ROOT)")
    yield from _manifest_rows(fs, path, source)


def _manifest_rows(fs, path: str, source: str) -> Iterator[Entry]:
    base = source.rsplit("/", 1)[0] if "/" in source else "."
    for frame in _read_table(fs, path):
        column = next((c for c in frame.columns if str(c).lower() in URI_COLUMNS), None)
        if column is None:
            raise SourceError(f"manifest {source} has no column named one of {URI_COLUMNS}")
        for uri, size in zip(frame[column].astype(str), _sizes(frame, "size")):
            absolute = "://" in uri or uri.startswith("/")
            yield (uri if absolute else f"{base}/{uri}"), size


class _Roots:
    """Where manifests may point: the roots of the sources given plus those allowed explicitly."""

    def __init__(self, sources: list[str], allowed: Iterable[str]):
        self._sources = sources
        self._allowed = list(allowed)

    @functools.cached_property
    def roots(self) -> set[tuple[str, str, str]]:
        """Computed when a manifest first asks: a plain list of URLs costs nothing."""
        return {*map(_source_root, self._sources), *map(_split, self._allowed)}

    def allow(self, uri: str) -> bool:
        scheme, host, path = _split(uri)
        return any(scheme == root_scheme and (not root_host or host == root_host)
                   and (path == root_path or path.startswith(root_path.rstrip("/") + "/"))
                   for root_scheme, root_host, root_path in self.roots)

    def __str__(self) -> str:
        return ", ".join(sorted(path if scheme == "file" else f"{scheme}://{host}{path}"
                                for scheme, host, path in self.roots))


def _source_root(source: str) -> tuple[str, str, str]:
    """A URL's scheme and bucket or host; a local folder, or the folder a local name is in."""
    scheme, host, path = _split(source)
    if scheme != "file":
        return scheme, host, "/"
    folder = path if os.path.exists(path) else re.split(r"[*?\[]", path, maxsplit=1)[0]
    return scheme, "", folder if os.path.isdir(folder) else os.path.dirname(folder)


def _split(uri: str) -> tuple[str, str, str]:
    """(scheme, host or bucket, path) with the path normalised: no ``..`` can climb out of a root."""
    protocol, rest = split_protocol(uri)
    if protocol in (None, "file", "local"):
        return "file", "", os.path.normpath(os.path.abspath(rest))
    parts = urlsplit(uri)
    return protocol, parts.netloc.lower(), posixpath.normpath("/" + parts.path.lstrip("/"))


def _read_table(fs, path: str) -> Iterator[pd.DataFrame]:
    import pandas as pd  # manifests only: listing files and folders needs no pandas

    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=_MANIFEST_CHUNK):
                yield batch.to_pandas()
        return
    separator = "\t" if path.endswith(".tsv") else ","
    with fs.open(path, "rb", compression="infer") as handle:
        yield from pd.read_csv(handle, sep=separator, chunksize=_MANIFEST_CHUNK, dtype=str)


def _s3_inventory(fs, path: str, source: str, storage_options: dict | None, roots: _Roots) -> Iterator[Entry]:
    """AWS S3 Inventory: manifest.json lists CSV (gzip, no header) or Parquet data files.

    The audited bucket and the data files must lie under the allowed roots, like a manifest's
    rows; both are known from manifest.json, so nothing is read before they are checked.
    """
    manifest = json.loads(fs.cat_file(path))
    bucket = manifest["sourceBucket"]
    data_bucket = manifest["destinationBucket"].removeprefix("arn:aws:s3:::")
    keys = [f"{data_bucket}/{item['key']}" for item in manifest["files"]]
    for uri in [f"s3://{bucket}/", *(f"s3://{key}" for key in keys)]:
        if not roots.allow(uri):
            raise SourceError(f"S3 Inventory {source} names {uri}, outside the allowed roots ({roots}); "
                              "allow it with allowed_roots (lid-dask --allow-root ROOT)")
    columns = [c.strip() for c in manifest.get("fileSchema", "").split(",")]
    data_fs = fsspec.filesystem("s3", **(storage_options or {})) if "s3" not in _protocols(fs) else fs
    for key in keys:
        if manifest.get("fileFormat", "CSV").upper() == "PARQUET":
            frames = _read_table(data_fs, key if key.endswith(".parquet") else key + ".parquet")
            for frame in frames:
                frame.columns = [c.lower() for c in frame.columns]
                for object_key, size in zip(frame["key"], _sizes(frame, "size")):
                    if is_audio_name(object_key):
                        yield f"s3://{bucket}/{object_key}", size
            continue
        import pandas as pd

        raw = data_fs.cat_file(key)
        text = gzip.decompress(raw) if key.endswith(".gz") else raw
        for frame in pd.read_csv(io.BytesIO(text), header=None, names=columns, dtype=str, chunksize=_MANIFEST_CHUNK):
            for object_key, size in zip(frame["Key"], _sizes(frame, "Size")):
                object_key = unquote_plus(object_key)  # CSV inventories URL-encode keys
                if is_audio_name(object_key):
                    yield f"s3://{bucket}/{object_key}", size


def _sizes(frame: pd.DataFrame, column: str) -> list[int | None]:
    """Sizes in bytes where the table has them (a CSV column with gaps reads back as "10.0")."""
    import pandas as pd

    if column not in frame.columns:
        return [None] * len(frame)
    return [None if pd.isna(size) else int(size) for size in pd.to_numeric(frame[column], errors="coerce")]


def _protocols(fs) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _exists(fs, path: str) -> bool:
    try:
        return fs.exists(path)
    except Exception:  # noqa: BLE001 - unreachable: reported per file later
        return False


def _isdir(fs, path: str) -> bool:
    try:
        return fs.isdir(path)
    except Exception:  # noqa: BLE001 - unreachable: reported per file later
        return False


def _url(fs, original: str, path: str) -> str:
    """Give back a URL with the protocol the user used (fsspec strips it)."""
    return fs.unstrip_protocol(path) if "://" in original else path
