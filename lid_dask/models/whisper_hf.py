"""Whisper through transformers: any Whisper checkpoint on the Hub or in a local folder.

This runs checkpoints CTranslate2 has no conversion of at hand (e.g. ``openai/whisper-large-v3``,
fine-tuned models) in PyTorch. Language ID is Whisper's own: one decoder step after
``<|startoftranscript|>``, softmax over the language tokens only. Every window of a batch goes
through one forward pass; each is padded with silence to Whisper's 30 s context before the
log-mel, as the original Whisper does, because transformers' encoders expect exactly 3000 frames.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer
from transformers.models.whisper.tokenization_whisper import LANGUAGES
from transformers.utils import cached_file

from lid_dask.audio import SAMPLE_RATE
from lid_dask.languages import to_code
from lid_dask.models.base import Backend, ModelSpec, file_digest, pad_to, torch_dtype

DEFAULT_SOURCE = "openai/whisper-large-v3"


def weights_digest(folder: Path) -> str:
    """sha256 of the weights file, or of the shards' digests for a sharded checkpoint."""
    files = (sorted(folder.glob("model*.safetensors")) or sorted(folder.glob("pytorch_model*.bin")))
    if not files:
        raise RuntimeError(f"no weights file (model*.safetensors, pytorch_model*.bin) in {folder}")
    if len(files) == 1:
        return file_digest(files[0])
    return hashlib.sha256("".join(f"{f.name}:{file_digest(f)}\n" for f in files).encode()).hexdigest()


class WhisperHF(Backend):
    """Options: ``dtype`` (float16 on CUDA, float32 on CPU). Source: a Hub id (default large-v3) or a folder."""

    backend_name = "whisper-hf"
    options = frozenset({"dtype"})
    max_batch = 16

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        super().__init__(spec, device)
        source = spec.source or DEFAULT_SOURCE
        self.dtype = torch_dtype(spec, device)
        self.torch_device = torch.device(device)
        try:
            self.model = WhisperForConditionalGeneration.from_pretrained(source, dtype=self.dtype)
            self.features = WhisperFeatureExtractor.from_pretrained(source)
            lang_to_id = getattr(self.model.generation_config, "lang_to_id", None) or self._tokenizer_languages(source)
            self.path = Path(cached_file(source, "config.json")).parent
        except Exception as exc:
            where = "the local folder" if os.path.isdir(source) else "the Hugging Face Hub download"
            raise RuntimeError(f"cannot load transformers Whisper model {source!r}: {where} failed "
                               f"({type(exc).__name__}: {exc})") from exc
        self.model.to(self.torch_device).eval()
        tokens = sorted(lang_to_id, key=lang_to_id.get)
        self.labels = [to_code(token) for token in tokens]
        self._lang_ids = torch.tensor([lang_to_id[token] for token in tokens], device=self.torch_device)
        self._start = self.model.generation_config.decoder_start_token_id
        self._sha256: str | None = None

    @staticmethod
    def _tokenizer_languages(source: str) -> dict[str, int]:
        """``<|xx|>`` token ids for checkpoints whose generation config has no ``lang_to_id``."""
        tokenizer = WhisperTokenizer.from_pretrained(source)
        ids = {f"<|{code}|>": tokenizer.convert_tokens_to_ids(f"<|{code}|>") for code in LANGUAGES}
        found = {token: i for token, i in ids.items() if i is not None and i != tokenizer.unk_token_id}
        if not found:
            raise ValueError("neither generation_config.lang_to_id nor <|xx|> language tokens found")
        return found

    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        if not windows:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        audio = [pad_to(np.asarray(w, dtype=np.float32), self.features.n_samples) for w in windows]
        mels = self.features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        start = torch.full((len(windows), 1), self._start, device=self.torch_device)
        with torch.inference_mode():
            logits = self.model(input_features=mels.to(self.torch_device, self.dtype), decoder_input_ids=start).logits
            probabilities = torch.softmax(logits[:, -1, self._lang_ids].float(), dim=-1)
        return probabilities.cpu().numpy()

    def fingerprint(self) -> dict:
        if self._sha256 is None:
            self._sha256 = weights_digest(self.path)
        return {**super().fingerprint(), "dtype": str(self.dtype).removeprefix("torch."),
                "model_sha256": self._sha256, "torch": torch.__version__, "transformers": transformers.__version__}
