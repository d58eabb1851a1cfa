"""Turn what a user names (files, folders, globs, URLs, manifests, S3 Inventory) into audio URLs.

Everything is a generator: an S3 prefix is listed page by page and a manifest read in chunks,
so registering millions of files never holds them all in memory. Entries carry the size when
the listing gives it, which lets the orchestrator size batches by bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from urllib.parse import unquote_plus

import fsspec
import pandas as pd
from fsspec.asyn import sync
from fsspec.core import url_to_fs

AUDIO_EXTENSIONS = frozenset(
    "wav flac mp3 ogg oga opus m4a aac mp4 m4v mov mkv webm wma aiff aif au amr ac3 mka mpga 3gp".split()
)
MANIFEST_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".tsv")
URI_COLUMNS = ("uri", "url", "path", "file", "filename")
_MANIFEST_CHUNK = 100_000

Entry = tuple[str, int | None]  # (uri, size in bytes if known)


def is_audio_name(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "." in name and name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS


def expand_sources(sources: str | Iterable[str], storage_options: dict | None = None) -> Iterator[str]:
    """Yield file URLs only (see `iter_entries`)."""
    return (uri for uri, _ in iter_entries(sources, storage_options))


def iter_entries(sources: str | Iterable[str], storage_options: dict | None = None) -> Iterator[Entry]:
    """Yield (uri, size) for every audio file the sources name.

    A folder or prefix gives its audio files recursively, a glob its matches, a manifest (CSV,
    TSV or Parquet with a uri/url/path column) its rows, an S3 Inventory ``manifest.json`` the
    objects of its data files. Anything else, and any name with an audio extension, is passed
    through untouched, even if it does not exist: a missing file is that file's error, not the
    whole run's.
    """
    if isinstance(sources, str):
        sources = [sources]
    for source in map(str, sources):
        if is_audio_name(source) and not _is_glob(source):
            yield source, None  # a list of object URLs must not cost a storage request per URL
            continue
        fs, path = url_to_fs(source, **(storage_options or {}))
        if path.endswith("manifest.json") and _exists(fs, path):
            yield from _s3_inventory(fs, path, storage_options)
        elif path.lower().endswith(MANIFEST_SUFFIXES) and _exists(fs, path):
            yield from _manifest(fs, path, source)
        elif _is_glob(path):
            for match, info in sorted(fs.glob(path, detail=True).items()):
                if info.get("type") != "directory":
                    yield _url(fs, source, match), info.get("size")
        elif _isdir(fs, path):
            yield from _walk(fs, path, source)
        else:
            yield source, None


def _is_glob(name: str) -> bool:
    return any(char in name for char in "*?[")


def _walk(fs, path: str, source: str) -> Iterator[Entry]:
    if "s3" in _protocols(fs):  # page by page: a prefix may hold millions of keys
        bucket, _, prefix = path.partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = fs._iterdir(bucket, delimiter="", prefix=prefix)
        while True:
            try:
                info = sync(fs.loop, pages.__anext__)
            except StopAsyncIteration:
                return
            if info.get("type") == "file" and is_audio_name(info["name"]):
                yield _url(fs, source, info["name"]), info.get("size")
    else:
        for found, info in sorted(fs.find(path, detail=True).items()):
            if is_audio_name(found):
                yield _url(fs, source, found), info.get("size")


def _manifest(fs, path: str, source: str) -> Iterator[Entry]:
    """Rows of a CSV/TSV/Parquet manifest; relative paths are relative to the manifest's folder."""
    base = source.rsplit("/", 1)[0] if "/" in source else "."
    for frame in _read_table(fs, path):
        column = next((c for c in frame.columns if str(c).lower() in URI_COLUMNS), None)
        if column is None:
            raise ValueError(f"manifest {source} has no column named one of {URI_COLUMNS}")
        for uri, size in zip(frame[column].astype(str), _sizes(frame, "size")):
            absolute = "://" in uri or uri.startswith("/")
            yield (uri if absolute else f"{base}/{uri}"), size


def _read_table(fs, path: str) -> Iterator[pd.DataFrame]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=_MANIFEST_CHUNK):
                yield batch.to_pandas()
        return
    separator = "\t" if path.endswith(".tsv") else ","
    with fs.open(path, "rb", compression="infer") as handle:
        yield from pd.read_csv(handle, sep=separator, chunksize=_MANIFEST_CHUNK, dtype=str)


def _s3_inventory(fs, path: str, storage_options: dict | None) -> Iterator[Entry]:
    """AWS S3 Inventory: manifest.json lists CSV (gzip, no header) or Parquet data files."""
    manifest = json.loads(fs.cat_file(path))
    bucket = manifest["sourceBucket"]
    columns = [c.strip() for c in manifest.get("fileSchema", "").split(",")]
    data_fs = fsspec.filesystem("s3", **(storage_options or {})) if "s3" not in _protocols(fs) else fs
    for item in manifest["files"]:
        key = f"{manifest['destinationBucket'].removeprefix('arn:aws:s3:::')}/{item['key']}"
        if manifest.get("fileFormat", "CSV").upper() == "PARQUET":
            frames = _read_table(data_fs, key if key.endswith(".parquet") else key + ".parquet")
            for frame in frames:
                frame.columns = [c.lower() for c in frame.columns]
                for object_key, size in zip(frame["key"], _sizes(frame, "size")):
                    if is_audio_name(object_key):
                        yield f"s3://{bucket}/{object_key}", size
            continue
        raw = data_fs.cat_file(key)
        text = gzip.decompress(raw) if item["key"].endswith(".gz") else raw
        for frame in pd.read_csv(io.BytesIO(text), header=None, names=columns, dtype=str, chunksize=_MANIFEST_CHUNK):
            for object_key, size in zip(frame["Key"], _sizes(frame, "Size")):
                object_key = unquote_plus(object_key)  # CSV inventories URL-encode keys
                if is_audio_name(object_key):
                    yield f"s3://{bucket}/{object_key}", size


def _sizes(frame: pd.DataFrame, column: str) -> list[int | None]:
    """Sizes in bytes where the table has them (a CSV column with gaps reads back as "10.0")."""
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
