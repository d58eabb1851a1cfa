"""Typed result records: what `identify` returns per file, before it becomes a DataFrame row."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field

from lid_dask.vocabulary import Agreement, ErrorKind, ReviewReason

TOP_K = 5


@dataclass(frozen=True)
class WindowVerdict:
    """One model's view of one window."""

    start: float
    duration: float
    speech_seconds: float
    language: str | None
    probability: float


@dataclass(frozen=True)
class ModelVerdict:
    """One model's answer for one file: windows combined, weighted by speech."""

    model: str
    language: str | None
    probability: float
    top: dict[str, float]  # the TOP_K most likely languages
    windows_disagree: bool = False
    windows: tuple[WindowVerdict, ...] = ()


@dataclass(frozen=True)
class FileResult:
    """The answer for one file. `error` is set when the file could not be identified."""

    uri: str
    language: str | None = None
    confidence: float = 0.0
    agreement: str = Agreement.NONE  # an `Agreement`
    needs_review: bool = False
    review_reasons: tuple[str, ...] = ()  # `ReviewReason`s
    duration: float | None = None
    speech_seconds: float = 0.0
    decoded_seconds: float = 0.0
    models: tuple[ModelVerdict, ...] = ()
    error_kind: str | None = None  # an `ErrorKind`
    error: str | None = None
    retryable: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Words from the vocabularies only (a result may come from an untrusted worker's event),
        kept as plain strings so that the record travels anywhere (msgpack events, JSON, Parquet)."""
        set_ = functools.partial(object.__setattr__, self)
        set_("agreement", Agreement(self.agreement).value)
        set_("review_reasons", tuple(ReviewReason(r).value for r in self.review_reasons))
        if self.error_kind is not None:
            set_("error_kind", ErrorKind(self.error_kind).value)

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def answered(self) -> bool:
        """The file has its answer: a language, or that it holds no speech or is too short."""
        return self.ok or ErrorKind(self.error_kind).is_answer

    def to_row(self) -> dict:
        """A flat row for tables: one column per model's language and probability."""
        row = {
            "uri": self.uri,
            "language": self.language,
            "confidence": round(self.confidence, 4) if self.language else None,  # no answer, no confidence
            "agreement": self.agreement,
            "needs_review": self.needs_review,
            "review_reasons": ",".join(self.review_reasons),
            "duration": self.duration,
            "speech_seconds": round(self.speech_seconds, 2),
            "error_kind": self.error_kind,
            "error": self.error,
            "retryable": self.retryable,
        }
        for verdict in self.models:
            row[f"{verdict.model}.language"] = verdict.language
            row[f"{verdict.model}.probability"] = round(verdict.probability, 4)
        return row

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FileResult:
        """Inverse of `to_dict`, also after a trip through msgpack or JSON (tuples become lists)."""
        models = tuple(
            ModelVerdict(**{**m, "windows": tuple(WindowVerdict(**w) for w in m.get("windows", ()))})
            for m in data.get("models", ())
        )
        return cls(**{**data, "models": models, "review_reasons": tuple(data.get("review_reasons", ()))})
