"""A worker's HTTP(S) reaches public addresses only, unless allowed: real HTTP servers on
loopback (127.0.0.1 and 127.0.0.2), names, redirects and IP literals. No test traffic leaves
the machine: non-loopback addresses are only ever refused before a socket exists."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from lid_dask.audio import _refusal, check_address, load_windows
from lid_dask.errors import AddressNotAllowed, AudioError, ErrorKind
from lid_dask.windows import WindowPlan

from .test_storage import RangeHandler


def serve(host: str, handler_class, **handler_kwargs):
    """A threaded HTTP server on `host` whose handler records the paths it was asked for."""
    seen: list[str] = []

    class Recording(handler_class):
        def parse_request(self):  # recorded before any answer goes out: no race with the client
            parsed = super().parse_request()
            if parsed:
                seen.append(self.path)
            return parsed

    server = http.server.ThreadingHTTPServer((host, 0), lambda *a: Recording(*a, **handler_kwargs))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture(scope="module")
def files(audio_dir):
    """The audio folder over HTTP on 127.0.0.1: (base URL, paths requested)."""
    server, seen = serve("127.0.0.1", RangeHandler, directory=str(audio_dir))
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def refused(uri: str, **kwargs) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_windows(uri, WindowPlan(), **kwargs)
    assert info.value.kind is ErrorKind.PERMISSION_DENIED, info.value
    assert "address not allowed" in info.value.message and "allow_private_network" in info.value.message
    return info.value


def test_loopback_is_refused_unless_allowed(files):
    base, seen = files
    seen.clear()
    error = refused(f"{base}/en.wav")
    assert "127.0.0.1 is on a loopback network" in error.message
    assert seen == []  # refused before connecting
    assert load_windows(f"{base}/en.wav", WindowPlan(), allow_private_network=True).decoded_seconds > 3
    assert load_windows(f"{base}/en.wav", WindowPlan(), allow_private_network=["127.0.0.0/8"]).decoded_seconds > 3
    refused(f"{base}/en.wav", allow_private_network=["10.0.0.0/8"])  # other networks stay closed


def test_names_are_checked_after_resolution(files):
    base, seen = files
    seen.clear()
    error = refused(base.replace("127.0.0.1", "localhost") + "/en.wav")
    assert "localhost (127.0.0.1) is on a loopback network" in error.message
    assert seen == []


def test_chained_urls_are_checked_too(files):
    base, seen = files
    seen.clear()
    refused(f"simplecache::{base}/en.wav")
    assert seen == []


class Redirect(http.server.BaseHTTPRequestHandler):
    def __init__(self, *args, target: str):
        self.target = target
        super().__init__(*args)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


def test_a_redirect_to_a_private_address_is_refused(audio_dir):
    """127.0.0.1 is allowed here and redirects to 127.0.0.2, which is not: the file there is
    never asked for; allowing both networks follows the redirect."""
    target, target_seen = serve("127.0.0.2", RangeHandler, directory=str(audio_dir))
    redirect, redirect_seen = serve("127.0.0.1", Redirect, target=f"http://127.0.0.2:{target.server_address[1]}")
    try:
        uri = f"http://127.0.0.1:{redirect.server_address[1]}/en.wav"
        error = refused(uri, allow_private_network=["127.0.0.1/32"])
        assert "127.0.0.2 is on a loopback network" in error.message
        assert redirect_seen and target_seen == []
        both = ["127.0.0.1/32", "127.0.0.2/32"]
        assert load_windows(uri, WindowPlan(), allow_private_network=both).decoded_seconds > 3
        assert target_seen
    finally:
        redirect.shutdown()
        target.shutdown()


@pytest.mark.parametrize("host", ["169.254.169.254", "[0:0:0:0:0:ffff:a9fe:a9fe]", "[fd00:ec2:0:0:0:0:0:254]"])
def test_the_metadata_service_is_refused_before_any_connection(host):
    """The cloud metadata service, by IPv4 literal, IPv4-mapped IPv6 and AWS's IPv6 address
    (written out: fsspec reads a URL's "::" as a chain of file systems)."""
    address = host.strip("[]")
    with pytest.raises(AddressNotAllowed):  # checked without traffic first: a broken guard sends nothing
        check_address(address, address)
    started = time.monotonic()
    error = refused(f"http://{host}/latest/meta-data/iam.wav")
    assert time.monotonic() - started < 2  # no connection attempt, not a timeout
    assert "is on a" in error.message


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("::ffff:10.0.0.1", "private"), ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"), ("8.8.8.8", None),
    ("2606:4700:4700::1111", None)])
def test_which_addresses_a_worker_may_reach(address, kind):
    assert _refusal(address, ()) == kind
