"""The words lid-dask's records are made of: each a string enum, so it is stored, sent and
compared as plain text (the ledger, events, exports) yet spelt in one place."""

from __future__ import annotations

from enum import StrEnum


class FileState(StrEnum):
    """A file's state in a run's ledger."""

    PENDING = "pending"  # waiting to be claimed
    LEASED = "leased"  # claimed by an orchestrator session, in flight
    DONE = "done"  # answered (a language, or no speech / too short)
    FAILED = "failed"  # a transient failure, waiting for its retry
    DEAD = "dead"  # failed for good, with its reason


class Agreement(StrEnum):
    """How the models' own answers relate to the consensus answer."""

    UNANIMOUS = "unanimous"
    MAJORITY = "majority"
    SPLIT = "split"
    SINGLE = "single"  # one model
    NONE = "none"  # no answer


class ReviewReason(StrEnum):
    """Why a file goes to a person."""

    MODELS_DISAGREE = "models_disagree"
    LOW_CONFIDENCE = "low_confidence"
    WINDOWS_DISAGREE = "windows_disagree"
    NO_SPEECH = "no_speech"
    TOO_SHORT = "too_short"
    BELOW_ACCEPT_THRESHOLD = "below_accept_threshold"  # under the accept rule in force (`lid_dask.acceptance`)

    @property
    def from_confidence(self) -> bool:
        """Whether the reason is the confidence alone. An accept rule is fitted on the files no
        other reason sends to a person, and replaces the fixed low-confidence threshold."""
        return self in (ReviewReason.LOW_CONFIDENCE, ReviewReason.BELOW_ACCEPT_THRESHOLD)


class ErrorKind(StrEnum):
    """Why a file has no language: what went wrong, or what the file is (no speech, too short)."""

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
    LOST = "lost"  # the file's answer never came back (its batch's event was missing or partial)
    KILLED_WORKER = "killed_worker"  # processing the file killed its worker process, again and again
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        """Only a network error or lost work can go away by itself; everything else is the file's."""
        return self in (ErrorKind.NETWORK, ErrorKind.LOST)

    @property
    def is_answer(self) -> bool:
        """No speech and too short are the file's answer, not a failure: the file is done."""
        return self in (ErrorKind.NO_SPEECH, ErrorKind.TOO_SHORT)
