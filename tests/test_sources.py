"""What a user names becomes audio URLs: folders, globs, manifests, S3 prefixes and S3 Inventory,
on the local disk, over HTTP and on a real S3 API server (moto on loopback)."""

from __future__ import annotations

import gzip
import http.server
import json
import threading

import pandas as pd
import pytest
import s3fs

from lid_dask.errors import SourceError
from lid_dask.sources import iter_entries


@pytest.fixture
def tree(tmp_path):
    """a.wav, b.mp3, notes.txt and sub/c.flac with known sizes."""
    (tmp_path / "sub").mkdir()
    for name, size in {"a.wav": 10, "b.mp3": 20, "notes.txt": 5, "sub/c.flac": 30}.items():
        (tmp_path / name).write_bytes(b"x" * size)
    return tmp_path


def test_folders_recurse_to_audio_files_with_their_sizes(tree):
    assert list(iter_entries(str(tree))) == [
        (str(tree / "a.wav"), 10), (str(tree / "b.mp3"), 20), (str(tree / "sub/c.flac"), 30)]


def test_globs_and_plain_names(tree):
    assert list(iter_entries(str(tree / "*.mp3"))) == [(str(tree / "b.mp3"), 20)]
    missing = str(tree / "gone.wav")
    assert list(iter_entries([missing, f"file://{tree}/a.wav"])) == [(missing, None), (f"file://{tree}/a.wav", None)]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet"])
def test_manifests_resolve_relative_paths_and_keep_sizes(tree, suffix):
    frame = pd.DataFrame({"path": ["a.wav", "sub/c.flac", "/elsewhere/d.ogg"], "size": [10, None, 7],
                          "language": ["en", "de", "fr"]})
    manifest = tree / f"list{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(manifest)
    else:
        frame.to_csv(manifest, sep="\t" if suffix == ".tsv" else ",", index=False)
    assert list(iter_entries(str(manifest), allowed_roots=["/elsewhere"])) == [
        (f"{tree}/a.wav", 10), (f"{tree}/sub/c.flac", None), ("/elsewhere/d.ogg", 7)]


def test_a_manifest_without_a_uri_column_is_a_clear_error(tree):
    (tree / "bad.csv").write_text("name,language\na.wav,en\n")
    with pytest.raises(ValueError, match="no column named"):
        list(iter_entries(str(tree / "bad.csv")))


class CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        self.send_error(404)

    do_HEAD = do_GET


def test_a_list_of_object_urls_costs_no_request():
    """Registering a million URLs must not stat each one: a missing file is that file's error.
    A query string (a presigned URL's signature) is no glob."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = [f"{base}/clip{i}.wav" for i in range(20)] + [f"{base}/clip.mp3?X-Amz-Signature=ab[c]*"]
        assert list(iter_entries(urls)) == [(url, None) for url in urls]
    finally:
        server.shutdown()
    assert CountingHandler.requests == []


def test_s3_prefix_lists_every_page(s3, monkeypatch):
    """More keys than one ListObjectsV2 page (1,000) under a prefix, plus a non-audio key: all
    listed, one page at a time (a prefix may hold millions of keys: no listing into memory)."""
    fs = s3fs.S3FileSystem(**s3)  # fsspec's cached instance: the one iter_entries gets
    fs.mkdir("paged")
    fs.pipe({f"paged/many/{i:05d}.wav": b"x" * (i % 7) for i in range(1050)} | {"paged/many/readme.md": b"hi"})
    pages = []  # the recursive listing's requests (no delimiter); `info` asks for one key with "/"
    call_s3 = fs._call_s3

    async def counting(method, *args, **kwargs):
        if method == "list_objects_v2" and kwargs.get("Delimiter") == "":
            pages.append(kwargs.get("ContinuationToken"))
        return await call_s3(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", counting)
    listing = iter_entries("s3://paged/many/", s3)
    entries = [next(listing)]
    assert pages == [None]  # the first entry comes from the first page, before the second is asked for
    entries += listing
    assert len(pages) == 2 and pages[1] is not None
    assert len(entries) == 1050
    assert sorted(entries)[:2] == [("s3://paged/many/00000.wav", 0), ("s3://paged/many/00001.wav", 1)]


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_s3_inventory(s3, file_format):
    """An AWS S3 Inventory report: manifest.json naming data files (gzip CSV without a header,
    URL-encoded keys; or Parquet), in another bucket than the audio."""
    fs = s3fs.S3FileSystem(**s3)
    fs.mkdir(f"inventory-{file_format.lower()}")
    rows = [("clips", "talk/en.mp3", 11), ("clips", "talk/with space.opus", 12), ("clips", "talk/cover.jpg", 13)]
    if file_format == "CSV":
        data_key = "report/data/part-0.csv.gz"
        text = "".join(f'"{b}","{k.replace(" ", "+")}","{s}"\n' for b, k, s in rows)
        fs.pipe(f"inventory-csv/{data_key}", gzip.compress(text.encode()))
    else:
        data_key = "report/data/part-0.parquet"
        with fs.open(f"inventory-parquet/{data_key}", "wb") as handle:
            pd.DataFrame(rows, columns=["bucket", "key", "size"]).to_parquet(handle)
    bucket = f"inventory-{file_format.lower()}"
    manifest = {"sourceBucket": "clips", "destinationBucket": f"arn:aws:s3:::{bucket}",
                "fileFormat": file_format, "fileSchema": "Bucket, Key, Size", "files": [{"key": data_key}]}
    fs.pipe(f"{bucket}/report/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(SourceError, match=r"S3 Inventory .* names s3://clips/, outside the allowed roots"):
        list(iter_entries(f"s3://{bucket}/report/manifest.json", s3))  # the audited bucket is another one
    assert list(iter_entries(f"s3://{bucket}/report/manifest.json", s3, allowed_roots=["s3://clips"])) == [
        ("s3://clips/talk/en.mp3", 11), ("s3://clips/talk/with space.opus", 12)]
