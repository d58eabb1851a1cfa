"""SpeechBrain language ID (``speechbrain/lang-id-voxlingua107-ecapa``: ECAPA-TDNN, 107 languages).

A second model family next to Whisper, trained on other data (VoxLingua107, YouTube speech), so
its votes are informative for consensus. The model comes from the Hub or from a local folder in
the Hub's layout (hyperparams.yaml, embedding_model.ckpt, classifier.ckpt, label_encoder.txt);
for a folder, ``pretrained_path`` is pointed at it so that nothing is fetched. Each model gets
its own savedir (SpeechBrain links the files there), under a file lock so that worker processes
on one machine do not collect into it at the same time.

Needs the ``speechbrain`` extra and a torchaudio built for the installed torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import speechbrain
import torch
from filelock import FileLock
from speechbrain.inference.classifiers import EncoderClassifier

from lid_dask.languages import to_code
from lid_dask.models.base import Backend, ModelSpec, file_digest, torch_dtype
from lid_dask.models.bundled import cache_root

DEFAULT_SOURCE = "speechbrain/lang-id-voxlingua107-ecapa"


def savedir_for(source: str) -> Path:
    """A folder per model: the Hub id, or a local folder's name plus a hash of its absolute path."""
    if os.path.isdir(source):
        absolute = os.path.abspath(source)
        slug = f"{Path(absolute).name}-{hashlib.sha256(absolute.encode()).hexdigest()[:12]}"
    else:
        slug = source.replace("/", "--")
    return cache_root() / "speechbrain" / slug


def label_to_code(label: str) -> str:
    """``en: English`` -> ``en``; a label that is no language becomes a private-use tag ``und-x-<label>``.

    Such a class (say ``noise`` in some recipe) keeps its column, so the probabilities still sum
    to one and a file can still come out as "not a language we know", instead of the load failing.
    """
    try:
        return to_code(label)
    except ValueError:
        return "und-x-" + re.sub(r"[^0-9a-z]+", "-", label.split(":", 1)[0].lower()).strip("-")


class SpeechBrainLID(Backend):
    """Options: ``dtype`` (autocast; float16 on CUDA, float32 on CPU). Source: a Hub id (default above) or a folder."""

    backend_name = "speechbrain"
    options = frozenset({"dtype"})
    max_batch = 16

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        super().__init__(spec, device)
        source = spec.source or DEFAULT_SOURCE
        local = os.path.isdir(source)
        self.dtype = torch_dtype(spec, device)
        self.savedir = savedir_for(source)
        self.savedir.parent.mkdir(parents=True, exist_ok=True)
        overrides = {"pretrained_path": os.path.abspath(source)} if local else {}
        try:
            with FileLock(str(self.savedir) + ".lock"):
                self.model = EncoderClassifier.from_hparams(
                    source=source, savedir=str(self.savedir), overrides=overrides, run_opts={"device": device})
        except Exception as exc:
            where = "the local folder" if local else "the Hugging Face Hub download"
            raise RuntimeError(f"cannot load SpeechBrain model {source!r}: {where} failed "
                               f"({type(exc).__name__}: {exc})") from exc
        encoder = self.model.hparams.label_encoder
        encoder.ignore_len()  # its length check is for training; silences a warning on every load
        self.labels = [label_to_code(encoder.ind2lab[i]) for i in range(len(encoder))]
        self._sha256: str | None = None

    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        """One pass over the batch padded to its longest window.

        Relative lengths keep the padding out of the feature normalisation and the pooling, but
        the convolutions still see it next to a window's end. So the padding mirrors the audio,
        as those convolutions pad their own edges: against each window run alone, answers moved
        about three times less than with silence (random-weight ECAPA, espeak-ng speech).
        """
        if not windows:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        lengths = np.array([len(w) for w in windows])
        longest = int(lengths.max())
        padded = [np.pad(np.asarray(w, dtype=np.float32), (0, longest - len(w)), mode="reflect") for w in windows]
        wavs = torch.from_numpy(np.stack(padded))
        autocast = (torch.autocast(torch.device(self.device).type, dtype=self.dtype)
                    if self.dtype != torch.float32 else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out_prob, _, _, _ = self.model.classify_batch(wavs, wav_lens=torch.from_numpy(lengths / longest).float())
        # out_prob is log-softmax in the VoxLingua107 recipe; softmax gives those probabilities back
        # exactly, and also turns the raw scores of recipes without a final softmax into probabilities.
        return torch.softmax(out_prob.float(), dim=-1).cpu().numpy()

    def fingerprint(self) -> dict:
        if self._sha256 is None:  # every checkpoint SpeechBrain collected: weights and label encoder
            digests = "".join(f"{path.name}:{file_digest(path)}\n" for path in sorted(self.savedir.glob("*.ckpt")))
            self._sha256 = hashlib.sha256(digests.encode()).hexdigest()
        return {**super().fingerprint(), "dtype": str(self.dtype).removeprefix("torch."),
                "model_sha256": self._sha256, "torch": torch.__version__, "speechbrain": speechbrain.__version__}
