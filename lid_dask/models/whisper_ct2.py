"""Whisper through CTranslate2 (faster-whisper's engine): the embedded default backend.

faster-whisper's `WhisperModel.detect_language` looks at one 30 s window per call. Here every
window of every file in a batch goes through one `ctranslate2.models.Whisper.detect_language`
call, and each window is padded with silence only up to the context (10 s by default), which on
CPU is the main speed lever: the encoder's cost grows with the number of mel frames.

Whisper was trained on 30 s inputs only, and a short context pulls some answers towards Latin
(a failure users also report for short clips). For each language in ``recheck`` (Latin by
default) the short context's probability is scaled by how much more of it that context gives
than the 30 s context does on average (a prior-shift correction), and a window whose answer is
still that language is run again at 30 s, whose answer stands.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import ctranslate2
import numpy as np
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor

from lid_dask.audio import SAMPLE_RATE
from lid_dask.languages import to_code
from lid_dask.models.base import Backend, ModelSpec, file_digest, pad_to
from lid_dask.models.bundled import bundled_model_dir

MAX_CONTEXT = 30.0
# Both numbers come from studies/short_context_answers.py on the dev split's audio, without
# labels: of the windows where 10 s and 30 s answer differently, 44 moved to Latin at 10 s and
# none away (sign test p = 6e-14; no other language reached p < 0.01), and Latin's mean
# probability at 30 s is 0.37 of that at 10 s. benchmarks/README.md ("Short-context answers")
# has the accuracy and cost of this rule against the alternatives tried on dev.
DEFAULT_RECHECK = "la:0.37"


def parse_recheck(text: str) -> dict[str, float]:
    """``"la:0.37,sw"`` -> {"la": 0.37, "sw": 1.0}: languages and their short-context factors."""
    recheck = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, _, factor = item.partition(":")
        recheck[to_code(code)] = float(factor) if factor else 1.0
    return recheck


def _language_tokens(folder: Path) -> list[str]:
    """The model's language tokens (``<|en|>``...), in the order of its ``lang_ids``."""
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "config.json").read_text())
    return [tokenizer.id_to_token(i) for i in config["lang_ids"]]


def _not_a_missing_folder(source: str) -> None:
    """A source written as a path (``/``, ``./``, ``~``) names a folder, never a Hub id."""
    if source.startswith(("/", ".", "~")):
        raise ValueError(f"no model folder {source!r} (a CTranslate2 Whisper folder, e.g. made by "
                         "ct2-transformers-converter)")


def resolve_ct2_source(source: str | None) -> Path:
    """The model's folder: ``bundled``/None, a local folder, or a Hub id (needs the network)."""
    if source in (None, "bundled"):
        return bundled_model_dir()
    if os.path.isdir(source):
        return Path(source)
    _not_a_missing_folder(source)
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(source))
    except Exception as exc:
        raise RuntimeError(f"cannot load Whisper model {source!r}: not a folder and the Hub download "
                           f"failed ({type(exc).__name__}: {exc})") from exc


class WhisperCT2(Backend):
    """Options: ``compute_type`` (int8 on CPU, float16 on CUDA), ``context`` seconds, ``threads``,
    ``batch`` (windows per call: 4 on CPU, 32 on CUDA), ``recheck`` (``code[:factor]``,
    comma-separated; empty for none), ``recheck_context`` (seconds the recheck listens with, 30)."""

    backend_name = "whisper-ct2"
    options = frozenset({"compute_type", "batch", "context", "recheck", "recheck_context", "threads"})

    @classmethod
    def labels_for(cls, spec: ModelSpec) -> list[str] | None:
        """From the folder's tokenizer and config, without loading the weights (a Hub id: unknown
        until a worker downloads it)."""
        if spec.source not in (None, "bundled") and not os.path.isdir(spec.source):
            _not_a_missing_folder(spec.source)
            return None
        return [to_code(token) for token in _language_tokens(resolve_ct2_source(spec.source))]

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        super().__init__(spec, device)
        self.path = resolve_ct2_source(spec.source)
        # The weights loaded, hashed once: a model folder changed after it was verified (or another
        # image's) shows in the fingerprint as drift, and batches need not hash it again.
        self._sha256 = file_digest(self.path / "model.bin")
        self.compute_type = spec.options.get("compute_type", "float16" if device == "cuda" else "int8")
        # On CPU a batch saves no time (measured: benchmarks/README.md) and a large one costs
        # ~200 MB of activations; GPUs need large batches to be busy.
        self.max_batch = int(spec.options.get("batch", 32 if device == "cuda" else 4))
        self.context = float(spec.options.get("context", 10))
        self.recheck = parse_recheck(spec.options.get("recheck", DEFAULT_RECHECK))
        self.recheck_context = float(spec.options.get("recheck_context", MAX_CONTEXT))
        self._thread = threading.local()  # a worker's threads share one loaded model
        self.model = ctranslate2.models.Whisper(
            str(self.path), device=device, compute_type=self.compute_type,
            intra_threads=int(spec.options.get("threads", 0)),
        )
        self.features = FeatureExtractor(feature_size=self._n_mels())
        self._tokens = _language_tokens(self.path)
        self.labels = [to_code(token) for token in self._tokens]
        self._index = {token: i for i, token in enumerate(self._tokens)}
        unknown = set(self.recheck) - set(self.labels)
        if unknown:
            raise ValueError(f"recheck names languages this model does not know: {sorted(unknown)}")
        self._short_context_factors = np.array([self.recheck.get(label, 1.0) for label in self.labels], np.float32)

    def _n_mels(self) -> int:
        preprocessor = self.path / "preprocessor_config.json"
        if preprocessor.exists():
            return json.loads(preprocessor.read_text()).get("feature_size", 80)
        return 80

    def padded_seconds(self, window: np.ndarray) -> float:
        """Pad to the context, or to the next whole second above it for longer windows (max 30 s)."""
        seconds = len(window) / SAMPLE_RATE
        return min(MAX_CONTEXT, max(self.context, math.ceil(seconds)))

    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        seconds = [self.padded_seconds(window) for window in windows]
        probabilities = self._detect(windows, seconds)
        self._thread.rechecked = ()
        short = [i for i, length in enumerate(seconds) if length < MAX_CONTEXT]
        if not (self.recheck and short):
            return probabilities
        rows = probabilities[short] * self._short_context_factors
        probabilities[short] = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
        again = [i for i in short if self.labels[int(probabilities[i].argmax())] in self.recheck]
        if again:
            probabilities[again] = self._detect([windows[i] for i in again], [self.recheck_context] * len(again))
        self._thread.rechecked = tuple(again)
        return probabilities

    def rechecked(self) -> tuple[int, ...]:
        return getattr(self._thread, "rechecked", ())

    def _detect(self, windows: list[np.ndarray], seconds: list[float]) -> np.ndarray:
        """One `detect_language` call per padded length; each window padded to its `seconds`."""
        probabilities = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        groups: dict[float, list[int]] = {}
        for i, length in enumerate(seconds):
            groups.setdefault(length, []).append(i)
        for length, members in groups.items():
            samples = int(length * SAMPLE_RATE)
            frames = samples // self.features.hop_length
            mels = np.stack([self.features(pad_to(windows[i], samples), padding=0)[:, :frames] for i in members])
            results = self.model.detect_language(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)))
            for row, pairs in zip(members, results):
                for token, probability in pairs:
                    probabilities[row, self._index[token]] = probability
        return probabilities

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "compute_type": self.compute_type, "context": self.context,
                "recheck": self.recheck, "recheck_context": self.recheck_context,
                "model_sha256": self._sha256, "ctranslate2": ctranslate2.__version__}
