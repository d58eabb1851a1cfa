"""The engine's configuration: one typed, checked object from the CLI and Python to the ledger and
every worker.

A run stores it as a dict (`to_dict`) and each worker rebuilds it (`from_json`), so a setting
exists once, is checked once, and a misspelt key is an error rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from lid_dask import languages as lang
from lid_dask.consensus import ConsensusConfig
from lid_dask.models import DEFAULT_MODEL, ModelSpec, check_spec
from lid_dask.speech import DETECTORS
from lid_dask.windows import WindowPlan


@dataclass(frozen=True)
class IdentifyConfig:
    """What decides the engine's answers, and how it reads the audio.

    `models`: model specs (see README "Models"), several for consensus; `windows`: a window plan
    (``auto``, ``spread:3x10``...); `languages`: an optional allow-list (a list, or a
    comma-separated string); `vad`: speech detector; `device`: auto | cpu | cuda; `consensus`:
    the consensus rule's weights and thresholds; `storage_options`: fsspec options (no
    credentials in a run: see `lid_dask.storage`); `calibrations`: fitted calibrations by model
    name (from the ledger); `accept_rule`: the stored accept rule that decides which answers need
    no review (`lid_dask.acceptance`; None: the default rule); `allow_private_network`: True, or
    CIDR networks, that HTTP(S) audio may be fetched from besides public addresses; `chunk_files`:
    files `Identifier.iter_results` decodes and runs through the models together;
    `decode_threads`: files decoded at once.
    """

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    windows: str = "auto"
    languages: tuple[str, ...] | None = None
    vad: str = "silero"
    device: str = "auto"
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    storage_options: dict | None = None
    calibrations: dict | None = None
    accept_rule: dict | None = None
    allow_private_network: bool | tuple[str, ...] = False
    chunk_files: int = 8
    decode_threads: int = 2

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)  # frozen: normalise in place
        models = (self.models,) if isinstance(self.models, str) else tuple(self.models)
        if not models:
            raise ValueError("at least one model is needed")
        for spec in models:
            check_spec(ModelSpec.parse(spec))
        set_("models", models)
        set_("windows", self.windows or "auto")
        WindowPlan.parse(self.windows)
        set_("languages", _language_codes(self.languages))
        if self.vad not in DETECTORS:
            raise ValueError(f"unknown speech detector {self.vad!r}; choose one of {', '.join(DETECTORS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if isinstance(self.consensus, dict):
            set_("consensus", _consensus(self.consensus))
        names = [ModelSpec.parse(spec).name for spec in models]
        strangers = sorted(set(self.consensus.model_weights) - set(names))
        if strangers:
            raise ValueError(f"model_weights names no model of this configuration: {', '.join(strangers)}; "
                             f"the models are {', '.join(names)}")
        if not isinstance(self.allow_private_network, bool):
            set_("allow_private_network", tuple(self.allow_private_network))
        if self.chunk_files < 1 or self.decode_threads < 1:
            raise ValueError("chunk_files and decode_threads must be at least 1")

    def check_models(self) -> None:
        """What can be checked before a run starts, without loading weights: each model can be
        found here (the bundled one is installed, a folder exists) and the allow-list is among the
        languages the models answer."""
        labels = {}
        for text in self.models:
            spec = ModelSpec.parse(text)
            backend = check_spec(spec)
            labels[spec.name] = backend.labels_for(spec) if backend else None
        lang.check_allow_list(list(self.languages or ()), labels)

    def to_dict(self) -> dict:
        """JSON-ready: lists for tuples, the consensus rule as a dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> IdentifyConfig:
        reject_unknown(cls, data, "engine setting")
        return cls(**{k: v for k, v in data.items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> IdentifyConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> IdentifyConfig:
        return IdentifyConfig.from_dict({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                                         **changes})


def reject_unknown(cls, data: dict, what: str) -> None:
    """A misspelt key is an error that lists the keys there are, never silently dropped."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known: "
                         f"{', '.join(names)}")


def _language_codes(languages: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Standard codes of an allow-list; ``"en,fr"`` is two languages, not five characters."""
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = languages.split(",")
    codes = tuple(lang.to_code(code) for code in languages if str(code).strip())
    return codes or None


def _consensus(values: dict) -> ConsensusConfig:
    reject_unknown(ConsensusConfig, values, "consensus setting")
    return ConsensusConfig(**values)
