"""Classified per-file failures.

A run over millions of files must never stop for one bad file, and the ledger must know whether
retrying can help. Every failure is an `AudioError` carrying an `ErrorKind` (`lid_dask.vocabulary`);
only network errors are transient. `INTERNAL` means a bug in lid-dask and nothing else: everything
a file, a storage system or a network can do wrong has its own kind.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from lid_dask.vocabulary import ErrorKind

__all__ = ["AddressNotAllowed", "AudioError", "ErrorKind", "SourceError", "causes", "classify_storage_error"]


class AudioError(Exception):
    """A file that cannot be identified, with the reason a person can act on."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


class SourceError(ValueError):
    """A source the command cannot turn into files (unreadable prefix, manifest row outside the
    allowed roots, a pattern matching nothing): the command stops, naming the source and why."""


class AddressNotAllowed(PermissionError):
    """A connection to a network address the worker may not reach (loopback, private, link-local...).

    A PermissionError so that network libraries pass it along like any refused connection.
    """


_MISSING_ERRNOS = {errno.ELOOP: "symbolic link loop", errno.ENAMETOOLONG: "name too long",
                   errno.ENOTDIR: "a parent is not a folder"}
_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                   errno.EIO}  # s3fs reports S3 error codes it does not know (throttling, 5xx) as EIO


def classify_storage_error(exc: BaseException) -> AudioError | None:
    """Classify an error of a file system, storage client or network; None if it is none of those."""
    chain = list(causes(exc))  # libraries wrap: aiohttp a refused address, fsspec a failed request
    for cause in chain:
        if isinstance(cause, AudioError):
            return cause
        if isinstance(cause, AddressNotAllowed):
            return AudioError(ErrorKind.PERMISSION_DENIED, str(cause))
    for cause in chain:
        if _is_network_library_error(cause):
            return AudioError(ErrorKind.NETWORK, str(cause) or type(cause).__name__)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in _MISSING_ERRNOS:
        return AudioError(ErrorKind.NOT_FOUND, f"{_MISSING_ERRNOS[exc.errno]}: {text}")
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return AudioError(ErrorKind.NOT_FOUND, text)
    if isinstance(exc, PermissionError):
        return AudioError(ErrorKind.PERMISSION_DENIED, text)
    if _is_credentials_error(exc):
        return AudioError(ErrorKind.PERMISSION_DENIED, f"no credentials: {text}")
    if isinstance(exc, (ConnectionError, TimeoutError)) or _is_network_library_error(exc):
        return AudioError(ErrorKind.NETWORK, text)
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return AudioError(ErrorKind.NETWORK, text)
    return None


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it was raised from, outermost first (libraries wrap each other's)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _is_credentials_error(exc: BaseException) -> bool:
    """botocore's NoCredentialsError, PartialCredentialsError, ... recognised without importing it."""
    return (type(exc).__module__ or "").startswith("botocore") and "Credential" in type(exc).__name__


def _is_network_library_error(exc: BaseException) -> bool:
    """Errors of HTTP/S3 client libraries, recognised without importing them."""
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    if module.startswith(("aiohttp", "botocore", "urllib3", "requests", "aiobotocore")):
        return any(word in name for word in ("Connect", "Timeout", "ServerDisconnected", "ReadError",
                                             "ClientPayload", "ClientOSError", "EndpointConnection"))
    return False
