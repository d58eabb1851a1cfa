"""Whisper through CTranslate2 (faster-whisper's engine): the embedded default backend.

faster-whisper's `WhisperModel.detect_language` looks at one 30 s window per call. Here every
window of every file in a batch goes through one `ctranslate2.models.Whisper.detect_language`
call, and each window is padded with silence only up to the context (10 s by default), which on
CPU is the main speed lever: the encoder's cost grows with the number of mel frames.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import ctranslate2
import numpy as np
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor

from lid_dask.audio import SAMPLE_RATE
from lid_dask.languages import to_code
from lid_dask.models.base import Backend, ModelSpec, file_digest, pad_to
from lid_dask.models.bundled import BUNDLED_SHA256, bundled_model_dir

MAX_CONTEXT = 30.0


def resolve_ct2_source(source: str | None) -> tuple[Path, str | None]:
    """(folder, known sha256): ``bundled``/None, a local folder, or a Hub id (needs the network)."""
    if source in (None, "bundled"):
        return bundled_model_dir(), BUNDLED_SHA256
    if os.path.isdir(source):
        return Path(source), None
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(source)), None
    except Exception as exc:
        raise RuntimeError(f"cannot load Whisper model {source!r}: not a folder and the Hub download "
                           f"failed ({type(exc).__name__}: {exc})") from exc


class WhisperCT2(Backend):
    """Options: ``compute_type`` (int8 on CPU, float16 on CUDA), ``context`` seconds, ``threads``,
    ``batch`` (windows per call: 4 on CPU, 32 on CUDA)."""

    backend_name = "whisper-ct2"

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        super().__init__(spec, device)
        self.path, self._sha256 = resolve_ct2_source(spec.source)
        self.compute_type = spec.options.get("compute_type", "float16" if device == "cuda" else "int8")
        # On CPU a batch saves no time (measured: benchmarks/README.md) and a large one costs
        # ~200 MB of activations; GPUs need large batches to be busy.
        self.max_batch = int(spec.options.get("batch", 32 if device == "cuda" else 4))
        self.context = float(spec.options.get("context", 10))
        self.model = ctranslate2.models.Whisper(
            str(self.path), device=device, compute_type=self.compute_type,
            intra_threads=int(spec.options.get("threads", 0)),
        )
        self.features = FeatureExtractor(feature_size=self._n_mels())
        tokenizer = tokenizers.Tokenizer.from_file(str(self.path / "tokenizer.json"))
        config = json.loads((self.path / "config.json").read_text())
        self._tokens = [tokenizer.id_to_token(i) for i in config["lang_ids"]]
        self.labels = [to_code(token) for token in self._tokens]
        self._index = {token: i for i, token in enumerate(self._tokens)}

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
        probabilities = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        groups: dict[float, list[int]] = {}
        for i, window in enumerate(windows):
            groups.setdefault(self.padded_seconds(window), []).append(i)
        for seconds, members in groups.items():
            samples = int(seconds * SAMPLE_RATE)
            frames = samples // self.features.hop_length
            mels = np.stack([self.features(pad_to(windows[i], samples), padding=0)[:, :frames] for i in members])
            results = self.model.detect_language(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)))
            for row, pairs in zip(members, results):
                for token, probability in pairs:
                    probabilities[row, self._index[token]] = probability
        return probabilities

    def fingerprint(self) -> dict:
        sha256 = self._sha256 or file_digest(self.path / "model.bin")
        return {**super().fingerprint(), "compute_type": self.compute_type, "context": self.context,
                "model_sha256": sha256, "ctranslate2": ctranslate2.__version__}
