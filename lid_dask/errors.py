"""Classified per-file failures.

A run over millions of files must never stop for one bad file, and the ledger must know whether
retrying can help. Every failure is an `AudioError` carrying an `ErrorKind`; only network errors
are transient.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    EMPTY = "empty"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    NO_AUDIO_STREAM = "no_audio_stream"
    UNSUPPORTED_CODEC = "unsupported_codec"
    TOO_SHORT = "too_short"
    NO_SPEECH = "no_speech"
    NETWORK = "network"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        """Only a network error can go away by itself; everything else is a property of the file."""
        return self is ErrorKind.NETWORK


class AudioError(Exception):
    """A file that cannot be identified, with the reason a person can act on."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind.retryable
