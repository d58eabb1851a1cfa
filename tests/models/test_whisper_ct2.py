"""The bundled Whisper backend's short context, and how its Latin answers are checked."""

from __future__ import annotations

import numpy as np
import pytest

from lid_dask.audio import load_windows
from lid_dask.models import load_model
from lid_dask.windows import WindowPlan


def _windows(*paths) -> list[np.ndarray]:
    return [load_windows(str(path), WindowPlan("first")).samples[0] for path in paths]


def test_recheck_scales_the_short_context_and_runs_what_it_still_answers_at_30s(audio_dir):
    english, german = _windows(audio_dir / "en.wav", audio_dir / "de.wav")
    plain = load_model("whisper-ct2:bundled?recheck=")
    short = plain.predict([english, german])
    full = load_model("whisper-ct2:bundled?context=30&recheck=").predict([english, german])
    assert not np.allclose(short, full, atol=1e-3)  # the two contexts do give different numbers
    assert [plain.labels[i] for i in short.argmax(1)] == ["en", "de"]
    de, en = plain.labels.index("de"), plain.labels.index("en")

    # A factor that leaves German on top: its window is run again at 30 s; English is only rescaled.
    rechecked = load_model("whisper-ct2:bundled?recheck=de:0.9").predict([english, german])
    np.testing.assert_allclose(rechecked[1], full[1], atol=1e-4)
    expected = short[0].copy()
    expected[de] *= 0.9
    np.testing.assert_allclose(rechecked[0], expected / expected.sum(), atol=1e-5)

    # A factor that dethrones German: no second run, English (the runner-up) may win.
    scaled = load_model("whisper-ct2:bundled?recheck=de:0").predict([german])[0]
    assert scaled[de] == 0 and scaled.sum() == pytest.approx(1, abs=1e-5)
    assert not np.allclose(scaled, full[1], atol=1e-3)
    assert scaled[en] > short[1][en]


def test_latin_is_rechecked_by_default_and_recorded_in_the_fingerprint():
    assert load_model("whisper-ct2:bundled").fingerprint()["recheck"] == {"la": 0.37}
    assert load_model("whisper-ct2:bundled?recheck=").fingerprint()["recheck"] == {}
    assert load_model("whisper-ct2:bundled?recheck=latin:0.5,sw").recheck == {"la": 0.5, "sw": 1.0}
    with pytest.raises(ValueError, match="does not know"):
        load_model("whisper-ct2:bundled?recheck=tlh")
