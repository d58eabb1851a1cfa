"""The review queue's ``listen`` links: a URL a person can open, signed for object stores."""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from lid_dask.evaluation.workflow import _listen_link
from tests.conftest import free_port

WEEK = 7 * 24 * 3600


@pytest.fixture(scope="module")
def bucket():
    """A bucket on a real S3 API server (moto, loopback only) holding one clip; its storage options."""
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("review")
    fs.pipe("review/talk/en 1.wav", b"RIFF-not-really-audio" * 10)
    yield options
    server.stop()


def test_an_s3_link_is_presigned_for_a_week_and_downloads_the_object(bucket):
    link = _listen_link("s3://review/talk/en 1.wav", bucket)
    parts = urlsplit(link)
    assert link.startswith(bucket["client_kwargs"]["endpoint_url"] + "/review/talk/en%201.wav?")
    query = {key: value for key, [value] in parse_qs(parts.query).items()}
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == str(WEEK) and query["X-Amz-Signature"]
    else:  # the query-string signature botocore makes here: an absolute expiry time
        assert abs(int(query["Expires"]) - (time.time() + WEEK)) < 60 and query["Signature"]
    # moto does not check signatures: this shows the link names the object, botocore signs it
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(link, timeout=30) as response:
        assert response.read() == b"RIFF-not-really-audio" * 10


def test_a_local_path_is_a_file_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _listen_link(str(tmp_path / "a.wav"), None) == f"file://{tmp_path}/a.wav"
    assert _listen_link("b.wav", None) == f"file://{tmp_path}/b.wav"
    assert _listen_link(f"file://{tmp_path}/c.wav", None) == f"file://{tmp_path}/c.wav"


def test_a_url_that_cannot_be_signed_is_given_as_it_is():
    assert _listen_link("https://cdn.example.org/x.wav?token=1", None) == "https://cdn.example.org/x.wav?token=1"
    assert _listen_link("memory://clips/x.wav", None) == "memory://clips/x.wav"
