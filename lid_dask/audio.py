"""Open any fsspec URL and decode only the windows a plan asks for, as 16 kHz mono float32.

Partial decoding is what makes archive-scale LID affordable: for a 30-minute file the engine
seeks to three 10 s windows instead of decoding 30 minutes. PyAV (FFmpeg) reads every container
and codec users have (wav, flac, mp3, ogg, opus, m4a/aac, webm, the audio track of videos), and
every failure is mapped to an `ErrorKind` so that one bad file fails alone.

Workers are third-party hosts and a file is data, not instructions: FFmpeg reads only real
audio/video containers (never a playlist or list naming other files), and over HTTP(S) a worker
reaches only public addresses unless told otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np
from fsspec.core import split_protocol, url_to_fs

from lid_dask.errors import AddressNotAllowed, AudioError, ErrorKind, classify_storage_error
from lid_dask.windows import Window, WindowPlan, covered_seconds

SAMPLE_RATE = 16_000
MIN_DURATION = 0.5  # seconds: below this no model can say anything useful
_SEEK_GAP = 1.0  # seconds: closer than this, decoding on is cheaper than a seek
_TRUNCATION_TOLERANCE = 0.5  # seconds of audio a header may over-promise before we call it truncated
_MAX_BAD_PACKETS = 20
_ANCHOR_FRAMES = 32  # frames after a seek whose timestamps vote on where the decoded audio starts
# FFmpeg demuxers of real audio/video containers. Others are never used: concat lists, HLS/DASH
# playlists, image sequences and the like make FFmpeg open further files or URLs named inside
# the file, which would let a file read what the worker can read.
DEMUXERS = ("wav", "w64", "flac", "mp3", "ogg", "mov", "aac", "matroska", "asf", "aiff", "au", "amr", "amrnb",
            "amrwb", "ac3", "eac3", "caf", "avi", "mpeg", "mpegts", "flv", "wv", "ape", "tta", "dts", "truehd")
_HTTP = frozenset({"http", "https"})


@dataclass
class DecodedAudio:
    """The windows of one file that the models will see."""

    uri: str
    duration: float | None
    windows: list[Window] = field(default_factory=list)
    samples: list[np.ndarray] = field(default_factory=list)
    codec: str = ""
    container: str = ""
    sample_rate: int = 0
    channels: int = 0
    source_seconds: float = 0.0  # how much of the file FFmpeg decoded, windows plus seek slack

    @property
    def decoded_seconds(self) -> float:
        """Seconds of the file the windows hold, overlaps counted once."""
        return covered_seconds((w.start, w.start + len(s) / SAMPLE_RATE) for w, s in zip(self.windows, self.samples))


def classify_exception(exc: BaseException) -> AudioError:
    """Map an exception from fsspec, a storage client or FFmpeg to a classified `AudioError`."""
    storage = classify_storage_error(exc)
    if storage is not None:
        return storage
    text = str(exc) or type(exc).__name__
    if isinstance(exc, av.error.EOFError):
        return AudioError(ErrorKind.TRUNCATED, text)
    if isinstance(exc, (av.error.InvalidDataError, av.error.FFmpegError)):
        return AudioError(ErrorKind.CORRUPT, text)
    return AudioError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {text}")


def open_filesystem(uri: str, storage_options: dict | None = None,
                    allow_private_network: bool | Iterable[str] = False):
    """fsspec's (filesystem, path) for `uri`.

    Unlike `fsspec.open`, never expands glob characters: a file named ``take*.wav`` is that file.
    HTTP(S), also inside a chained URL, goes through `public_http_client` unless private networks
    are allowed.
    """
    options = dict(storage_options or {})
    if allow_private_network is not True:
        client = functools.partial(public_http_client, allowed=_networks(allow_private_network))
        for protocol in _HTTP & {split_protocol(bit)[0] for bit in uri.split("::")}:
            options[protocol] = {**options.get(protocol, {}), "get_client": client}
    try:
        return url_to_fs(uri, **options)
    except (ValueError, ImportError, OSError) as exc:  # an unknown protocol, or its package missing here
        first_line = (str(exc) or type(exc).__name__).splitlines()[0]
        raise AudioError(ErrorKind.NOT_FOUND, f"no file system for this URL on this worker: {first_line}") from exc


@contextlib.contextmanager
def _open_container(fs, path: str, uri: str):
    """Open `path` with FFmpeg: local paths directly (fastest), anything else through fsspec.

    Only the demuxers in `DEMUXERS` may read it, and FFmpeg may open nothing but local files
    (never its own network protocols).
    """
    if fs.isdir(path):
        raise AudioError(ErrorKind.NOT_FOUND, f"{uri} is a directory, not an audio file")
    size = fs.size(path)
    if size == 0:
        raise AudioError(ErrorKind.EMPTY, f"{uri} is empty (0 bytes)")
    is_local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    with contextlib.ExitStack() as stack:
        source = path if is_local else stack.enter_context(fs.open(path, "rb"))
        try:
            container = av.open(source, mode="r", metadata_errors="ignore",
                                container_options={"format_whitelist": ",".join(DEMUXERS),
                                                   "protocol_whitelist": "file"})
        except av.error.ArgumentError as exc:  # what a format outside the whitelist gives
            raise AudioError(ErrorKind.CORRUPT, "not an audio or video container lid-dask reads (FFmpeg sees "
                             "another format: a playlist, list, image or text); nothing it names is opened") from exc
        except av.error.EOFError as exc:  # no header at all: nothing says more data was promised
            raise AudioError(ErrorKind.CORRUPT, "no audio header before the end of the file "
                             "(not audio, or cut off within its header)") from exc
        stack.callback(container.close)
        yield container


# -- HTTP(S) that reaches public addresses only ---------------------------------------------


async def public_http_client(allowed: tuple = (), **client_kwargs):
    """fsspec HTTP `get_client`: an aiohttp session that connects only to public addresses.

    Workers run on third-party hosts (often cloud VMs), so a URL must not steer one at its
    metadata service (169.254.169.254), its own loopback or the provider's private network.
    Names are checked after DNS resolution, IP literals and redirects at each connection.
    `allowed` lists networks (``ipaddress`` objects) that may be reached all the same.
    """
    import aiohttp  # only HTTP sources need it (the "http" extra)
    from aiohttp.resolver import DefaultResolver

    connector = aiohttp.TCPConnector(resolver=_PublicResolver(DefaultResolver(), allowed),
                                     socket_factory=functools.partial(_public_socket, allowed=allowed))
    return aiohttp.ClientSession(connector=connector, **client_kwargs)


class _PublicResolver:
    """aiohttp resolver (AbstractResolver's interface) that drops addresses a worker may not reach,
    so a name resolving to both kinds connects to the public ones and one resolving only to
    private ones fails with a single clear error."""

    def __init__(self, resolver, allowed: tuple):
        self._resolver = resolver
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        found = await self._resolver.resolve(host, port, family=family)
        public = [r for r in found if _refusal(r["host"], self._allowed) is None]
        if found and not public:
            check_address(found[0]["host"], host, self._allowed)
        return public

    async def close(self) -> None:
        await self._resolver.close()


def _public_socket(addr_info, allowed: tuple = ()) -> socket.socket:
    """aiohttp `socket_factory`: every connection passes here, IP literals included."""
    family, kind, proto, _, address = addr_info
    check_address(address[0], address[0], allowed)
    return socket.socket(family, kind, proto)


def check_address(address: str, host: str, allowed: tuple = ()) -> None:
    """Raise `AddressNotAllowed` unless a worker may connect to `address` (which `host` names)."""
    reason = _refusal(address, allowed)
    if reason is not None:
        named = host if host == address else f"{host} ({address})"
        raise AddressNotAllowed(f"address not allowed: {named} is on a {reason} network "
                                "(allow with allow_private_network=True, or name its networks)")


def _refusal(address: str, allowed: tuple) -> str | None:
    """The kind of network `address` is on if a worker may not reach it, else None."""
    ip = ipaddress.ip_address(address)
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in network for network in allowed):
        return None
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):  # narrowest first
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def _networks(allow_private_network: bool | Iterable[str]) -> tuple:
    """The networks `allow_private_network` names (False: none)."""
    if allow_private_network is False:
        return ()
    if isinstance(allow_private_network, str):
        allow_private_network = [allow_private_network]
    return tuple(ipaddress.ip_network(network) for network in allow_private_network)


def probe_duration(container, stream) -> float | None:
    """Duration from the stream, else the container; None when the format does not say."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def load_windows(uri: str, plan: WindowPlan, storage_options: dict | None = None,
                 allow_private_network: bool | Iterable[str] = False) -> DecodedAudio:
    """Decode the windows `plan` places in `uri`; raise a classified `AudioError` on bad input.

    HTTP(S) URLs reach only public addresses unless `allow_private_network` is True or lists the
    networks (CIDR strings, e.g. ``["10.1.0.0/16"]``) that may be reached.
    """
    try:
        fs, path = open_filesystem(uri, storage_options, allow_private_network)
        with _open_container(fs, path, uri) as container:
            if not container.streams.audio:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise AudioError(ErrorKind.NO_AUDIO_STREAM,
                                 f"no audio stream (streams: {', '.join(kinds)})")
            stream = container.streams.audio[0]
            codec_context = stream.codec_context
            if codec_context is None:
                raise AudioError(ErrorKind.UNSUPPORTED_CODEC,
                                 f"FFmpeg has no decoder for this {container.format.name} audio stream")
            if not codec_context.sample_rate:  # FFmpeg guessed the format from the name alone
                raise AudioError(ErrorKind.CORRUPT, f"not {container.format.name} audio: "
                                 "FFmpeg found no valid stream header (no sample rate)")
            duration = probe_duration(container, stream)
            if container.format.name == "wav" and codec_context.name.startswith("pcm_"):
                _check_wav_header(fs, path)
            audio = DecodedAudio(uri=uri, duration=duration, codec=codec_context.name,
                                 container=container.format.name, sample_rate=codec_context.sample_rate or 0,
                                 channels=codec_context.channels or 0)
            reader = _FrameReader(container, stream)
            for window, samples in _decode_windows(reader, plan.plan(duration), duration):
                audio.windows.append(window)
                audio.samples.append(samples)
            audio.source_seconds = reader.decoded_seconds
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none escapes as a crash
        raise classify_exception(exc) from exc
    total = audio.decoded_seconds
    if total < MIN_DURATION:
        raise AudioError(ErrorKind.TOO_SHORT, f"only {total:.2f} s of audio (need {MIN_DURATION} s)")
    return audio


def _check_wav_header(fs, path: str) -> None:
    """A WAV header declares its data size, and FFmpeg either trusts it or quietly shortens it to
    the file: compare it with the bytes there are, so a cut file is called truncated, with
    the seconds it really holds."""
    with fs.open(path, "rb") as handle:
        layout = wav_layout(handle)
        present = handle.seek(0, 2)
    if layout is None:
        return
    offset, declared, per_second = layout
    present = max(0, present - offset)
    if declared > present + _TRUNCATION_TOLERANCE * per_second:
        raise AudioError(ErrorKind.TRUNCATED, f"data ends at {present / per_second:.1f} s "
                         f"but the header promises {declared / per_second:.1f} s")


def wav_layout(handle) -> tuple[int, int, int] | None:
    """(data offset, declared data bytes, bytes a second) of a PCM RIFF, RF64 or BW64 file;
    None where the header declares no size (streaming writers leave 0xFFFFFFFF) or is unreadable.

    Hand-read because no library reports it: Python's `wave` reads neither RF64 nor
    WAVE_FORMAT_EXTENSIBLE, and FFmpeg and libsndfile shorten the size to the file's.
    """
    try:
        riff, _, wave_id = struct.unpack("<4sI4s", handle.read(12))
        if riff not in (b"RIFF", b"RF64", b"BW64") or wave_id != b"WAVE":
            return None
        per_second = size_64 = None
        while len(head := handle.read(8)) == 8:
            chunk, size = struct.unpack("<4sI", head)
            if chunk == b"data":
                size = size_64 if size == 0xFFFFFFFF else size
                return (handle.tell(), size, per_second) if size and per_second else None
            if chunk == b"ds64":  # 64-bit RIFF size, then 64-bit data size
                size_64 = struct.unpack("<8xQ", handle.read(16))[0]
                size -= 16
            elif chunk == b"fmt ":  # format tag, channels, rate, bytes a second, block align
                rate, block_align = struct.unpack("<4xI4xH", handle.read(14))
                per_second = rate * block_align
                size -= 14
            handle.seek(size + (size & 1), 1)
    except struct.error:  # a header cut short
        return None
    return None


def _decode_windows(reader: _FrameReader, windows: list[Window], duration: float | None
                    ) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield (window, samples) for each window, seeking between distant windows."""
    for window in windows:
        samples = reader.read(window.start, window.end)
        got = len(samples) / SAMPLE_RATE
        expected = window.duration if duration is None else min(window.end, duration) - window.start
        if duration is not None and got < expected - _TRUNCATION_TOLERANCE:
            where = f"at {window.start + got:.1f} s" if got else f"before {window.start:.1f} s"
            raise AudioError(ErrorKind.TRUNCATED, f"data ends {where} but the header promises {duration:.1f} s")
        if got == 0:
            continue
        yield Window(window.start, got), samples


class _FrameReader:
    """Sequential 16 kHz mono reader over one stream that seeks only when it must.

    Decoded frames are queued in a FIFO and resampled once per read: Vorbis decodes to ~50 frames
    a second, and resampling them one by one cost several times the decoding itself.
    """

    def __init__(self, container, stream):
        self.container = container
        self.stream = stream
        self._frames: Iterator | None = None
        self._chunks: list[np.ndarray] = []
        self._start: float | None = None  # time of the first buffered sample
        self._size = 0  # buffered samples
        self._eof = False
        self.decoded_seconds = 0.0

    @property
    def _end(self) -> float:
        if self._start is None:  # nothing decoded since the last seek
            return float("-inf")
        return self._start + self._size / SAMPLE_RATE

    def read(self, start: float, end: float) -> np.ndarray:
        if self._frames is None or self._start is None or start < self._start or start > self._end + _SEEK_GAP:
            self._restart(start)
            self._fill(end)
            if self._start is not None and start > 0 and self._start > start + 1 / SAMPLE_RATE:
                # The seek landed after `start` (Ogg places a page by an estimate): go back further.
                self._restart(max(0.0, start - _SEEK_GAP))
        self._fill(end)
        buffer = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        if self._start is None:  # the stream ended before any sample
            return buffer
        first = min(len(buffer), max(0, round((start - self._start) * SAMPLE_RATE)))
        last = min(len(buffer), max(first, round((end - self._start) * SAMPLE_RATE)))
        # Keep only what a later window could still need.
        self._chunks = [buffer[last:]]
        self._start += last / SAMPLE_RATE
        self._size = len(buffer) - last
        return buffer[first:last]

    def _fill(self, end: float) -> None:
        while self._end < end and not self._eof:
            self._decode_to(end)

    def _restart(self, start: float) -> None:
        if self._frames is not None or start > 0:
            offset = int(start / self.stream.time_base) if self.stream.time_base else 0
            self.container.seek(offset, stream=self.stream, backward=True)
        self._frames = self._iter_frames()
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._chunks, self._size, self._start, self._eof = [], 0, None, False
        self._shape = None
        self._fifo, self._queued = None, 0
        self._anchors: list[float] = []  # per frame: its timestamp minus the seconds decoded before it
        self._since_seek = 0.0

    def _iter_frames(self):
        bad = 0
        for packet in self.container.demux(self.stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                if bad > _MAX_BAD_PACKETS:
                    raise AudioError(ErrorKind.CORRUPT, f"more than {_MAX_BAD_PACKETS} undecodable packets")

    def _decode_to(self, end: float) -> None:
        """Queue frames until they reach `end` (or the stream ends), then resample them."""
        while not self._eof and (self._start is None or self._end + self._queued / self._shape[2] < end):
            self._decode_next()
        self._resample_queue()

    def _decode_next(self) -> None:
        frame = next(self._frames, None)
        if frame is None:
            self._eof = True
            self._resample_queue()
            self._append(self._resampler.resample(None))
            return
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._shape:  # streams may change rate or layout mid-way (concatenated files)
            if self._shape is not None:
                self._resample_queue()
                self._append(self._resampler.resample(None))
                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._shape = shape
            self._fifo, self._queued = av.AudioFifo(), 0
        if self._start is None:
            self._start = frame.time or 0.0
        if frame.time is not None and len(self._anchors) < _ANCHOR_FRAMES:
            self._anchors.append(frame.time - self._since_seek)
        self._since_seek += frame.samples / frame.sample_rate
        self.decoded_seconds += frame.samples / frame.sample_rate
        self._queued += frame.samples
        frame.pts = None  # the FIFO checks timestamps for gaps; after a seek or damage there may be some
        self._fifo.write(frame)

    def _resample_queue(self) -> None:
        """Resample everything queued, in one call.

        The first output after a seek is placed by the median of the frames' timestamps, not
        the first one: Ogg's demuxer estimates packet times inside a page, and after a seek the
        first Vorbis frame's time can be off by half a block (measured: 128 samples at 22.05 kHz).
        """
        if self._anchors and not self._chunks:
            self._start = float(np.median(self._anchors))
        if self._queued:
            self._append(self._resampler.resample(self._fifo.read()))
            self._queued = 0

    def _append(self, frames) -> None:
        for f in frames:
            if f.samples:
                chunk = f.to_ndarray().reshape(-1)
                self._chunks.append(chunk)
                self._size += len(chunk)
