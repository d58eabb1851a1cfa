"""Remote storage through fsspec: S3 (moto's real S3 server on loopback) and HTTP range requests."""

from __future__ import annotations

import http.server
import re
import threading

import pytest

from lid_dask import Identifier
from lid_dask.audio import load_windows
from lid_dask.errors import AudioError, ErrorKind
from lid_dask.sources import expand_sources
from lid_dask.windows import WindowPlan



def test_s3_files_missing_keys_and_listing(s3):
    identifier = Identifier(storage_options=s3)
    uris = sorted(expand_sources("s3://clips/talk/", s3))
    assert uris == ["s3://clips/talk/en.mp3", "s3://clips/talk/en.opus"]
    results = identifier.identify_batch([*uris, "s3://clips/talk/missing.mp3", "s3://no-such-bucket/a.wav"])
    assert [r.language for r in results[:2]] == ["en", "en"]
    assert [r.error_kind for r in results[2:]] == ["not_found", "not_found"]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support, as object stores and CDNs serve them."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        if not match:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(data)
            return
        start = int(match[1])
        end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start:end + 1])


@pytest.fixture(scope="module")
def http_base(audio_dir, encoded):
    handler = lambda *a, **k: RangeHandler(*a, directory=str(audio_dir), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_urls(http_base):
    """Range requests over HTTP. The server is on loopback, which a worker reaches only when allowed."""
    audio = load_windows(f"{http_base}/en_stereo.m4a", WindowPlan(), allow_private_network=True)
    assert audio.codec == "aac" and audio.decoded_seconds > 3
    with pytest.raises(AudioError) as info:
        load_windows(f"{http_base}/missing.ogg", WindowPlan(), allow_private_network=True)
    assert info.value.kind is ErrorKind.NOT_FOUND
    results = Identifier().identify_batch([f"{http_base}/en_stereo.m4a"])
    assert results[0].error_kind == "permission_denied" and "address not allowed" in results[0].error
    (allowed,) = Identifier(allow_private_network=["127.0.0.0/8"]).identify_batch([f"{http_base}/en_stereo.m4a"])
    assert allowed.language == "en", allowed.error


def test_s3_object_without_credentials_is_permission_denied(s3, no_credentials):
    endpoint_only = {"client_kwargs": s3["client_kwargs"], "skip_instance_cache": True}
    with pytest.raises(AudioError) as info:
        load_windows("s3://clips/talk/en.mp3", WindowPlan(), endpoint_only)
    assert info.value.kind is ErrorKind.PERMISSION_DENIED
    assert info.value.message.startswith("no credentials"), info.value.message
