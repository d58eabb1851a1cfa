"""identify() end to end with the bundled Whisper base model on real audio."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest
import soundfile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lid_dask import Identifier, identify
from lid_dask.consensus import ConsensusConfig
from lid_dask.errors import ErrorKind
from lid_dask.models import Backend, register_backend

from .conftest import run


@pytest.fixture(scope="module")
def identifier():
    return Identifier()


def test_identifies_english_and_german(identifier, audio_dir):
    results = identifier.identify_batch([str(audio_dir / "en.wav"), str(audio_dir / "de.wav")])
    assert [r.language for r in results] == ["en", "de"]
    for result in results:
        assert result.ok and result.agreement == "single" and 0.5 < result.confidence <= 1
        assert result.models[0].model == "whisper-ct2"
        assert sum(result.models[0].top.values()) <= 1.0001


def test_every_codec_gives_the_same_answer(identifier, encoded):
    results = identifier.identify_batch([str(p) for p in encoded.values()])
    assert {r.language for r in results} == {"en"}, [(r.uri, r.language, r.error) for r in results]


def test_bad_files_fail_alone_with_reasons(identifier, audio_dir, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silence = tmp_path / "silence.flac"
    run("sox", "-R", "-D", "-n", "-r", "16000", "-c", "1", str(silence), "trim", "0", "8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uris = [str(audio_dir / "en.wav"), str(empty), str(tmp_path / "gone.mp3"), str(silence),
            f"http://127.0.0.1:{port}/a.mp3", str(audio_dir / "de.wav")]
    results = Identifier(identifier.config, allow_private_network=True).identify_batch(uris)  # loopback: allowed
    assert [r.uri for r in results] == uris
    assert [r.error_kind for r in results] == [None, "empty", "not_found", "no_speech", "network", None]
    assert [r.language for r in results] == ["en", None, None, None, None, "de"]
    no_speech = results[3]
    assert no_speech.needs_review and no_speech.review_reasons == ("no_speech",)
    assert "no speech" in no_speech.error
    assert results[4].retryable and not results[2].retryable


def test_music_before_speech_does_not_decide(identifier, audio_dir, tmp_path):
    """Tones in front of the speech: the spread windows that hold tones do not vote."""
    tones = tmp_path / "tones.wav"
    run("sox", "-R", "-D", "-n", "-r", "16000", "-c", "1", str(tones), "synth", "40", "sine", "440:880", "gain", "-6")
    speech = tmp_path / "speech16.wav"
    run("sox", "-R", "-D", str(audio_dir / "en.wav"), "-r", "16000", str(speech), "repeat", "6")
    mixed = tmp_path / "intro_then_speech.ogg"
    run("sox", "-R", "-D", str(tones), str(speech), str(mixed))
    first = Identifier(windows="first").identify_batch([str(mixed)])[0]
    spread = identifier.identify_batch([str(mixed)])[0]
    assert first.error_kind == ErrorKind.NO_SPEECH.value  # the first 10 s are tones only
    assert spread.language == "en" and spread.speech_seconds > 5, spread.models


def test_allow_list_renormalises(identifier, audio_dir):
    restricted = Identifier(languages=["de", "fr"]).identify_batch([str(audio_dir / "en.wav")])[0]
    assert restricted.language in {"de", "fr"}
    assert set(restricted.models[0].top) <= {"de", "fr"}
    assert sum(restricted.models[0].top.values()) == pytest.approx(1.0, abs=1e-3)


def test_identify_returns_a_dataframe(audio_dir, encoded, tmp_path):
    folder = tmp_path / "nested" / "deeper"
    folder.mkdir(parents=True)
    for name in ("en.wav", "de.wav"):
        (folder / name).write_bytes((audio_dir / name).read_bytes())
    (folder / "notes.txt").write_text("not audio: folders yield audio files only")
    frame = identify([str(tmp_path), str(encoded["mp3"])], windows="spread:2x5", vad="energy")
    assert isinstance(frame, pd.DataFrame)
    assert {"uri", "language", "confidence", "agreement", "needs_review", "review_reasons", "error_kind",
            "whisper-ct2.language", "whisper-ct2.probability"} <= set(frame.columns)
    assert len(frame) == 3 and list(frame.language) == ["de", "en", "en"]


def test_unknown_settings_fail_the_call():
    with pytest.raises(ValueError):
        Identifier(models=["nope"])
    with pytest.raises(ValueError):
        Identifier(vad="loud")
    with pytest.raises(ValueError):
        Identifier(languages=["martian"])


class LoudnessAllergic(Backend):
    """A plug-in backend that crashes on clipped audio, as a model may crash on odd input."""

    backend_name = "loudness-allergic"

    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.labels = ["en", "de"]

    def predict(self, windows):
        if any(np.abs(w).max() > 0.99 for w in windows):
            raise RuntimeError("kernel failure on clipped input")
        return np.tile([0.7, 0.3], (len(windows), 1))


def test_a_model_crash_fails_only_the_file_that_caused_it(audio_dir, tmp_path):
    register_backend("loudness-allergic", LoudnessAllergic)
    clipped = tmp_path / "clipped.wav"
    run("sox", "-R", "-D", str(audio_dir / "en.wav"), str(clipped), "gain", "30")
    identifier = Identifier(models="loudness-allergic", vad="energy")
    uris = [str(audio_dir / "en.wav"), str(clipped), str(audio_dir / "de.wav")]
    results = identifier.identify_batch(uris)
    assert [r.error_kind for r in results] == [None, "internal", None]
    assert "kernel failure" in results[1].error and results[0].language == "en"


def test_a_long_file_settled_by_two_windows_skips_the_third(identifier, long_file):
    """Ten minutes of one English sentence: two windows agree, the third is not run and the
    result says so; running every window gives the same language."""
    settled = identifier.identify_batch([str(long_file)])[0]
    everything = Identifier(consensus=ConsensusConfig(early_stop=None)).identify_batch([str(long_file)])[0]
    assert settled.language == everything.language == "en"
    assert settled.extra["windows_skipped"] == {"whisper-ct2": 1}
    assert "windows_skipped" not in everything.extra
    not_run = [w for w in settled.models[0].windows if w.language is None]
    assert len(not_run) == 1 and not_run[0].speech_seconds >= ConsensusConfig().min_window_speech
    assert all(w.language == "en" for w in everything.models[0].windows)


def test_two_windows_that_disagree_do_not_settle(identifier, audio_dir, tmp_path):
    """German, then English, then sparse German (3 s of speech every 10 s): the two windows with
    the most speech disagree, so the third runs too and the file is flagged."""
    def part(source, name, effects):
        path = tmp_path / f"{name}.wav"
        run("sox", "-R", "-D", str(source), "-r", "16000", "-c", "1", str(path), *effects)
        return path

    german = part(audio_dir / "de.wav", "de", ["repeat", "12", "trim", "0", "100"])
    english = part(audio_dir / "en.wav", "en", ["repeat", "12", "trim", "0", "100"])
    sparse = part(audio_dir / "de.wav", "sparse", ["trim", "0", "3", "pad", "0", "7", "repeat", "9"])
    mixed = tmp_path / "de_en_de.flac"
    run("sox", "-R", "-D", str(german), str(english), str(sparse), str(mixed))
    result = identifier.identify_batch([str(mixed)])[0]
    windows = result.models[0].windows
    assert "windows_skipped" not in result.extra
    assert len(windows) == 3 and all(w.language is not None for w in windows), windows
    assert {windows[0].language, windows[1].language} == {"de", "en"}
    assert "windows_disagree" in result.review_reasons


class EveryWindowHeard(Backend):
    """Needs the audio (so the engine decodes and measures speech) and answers at once."""

    backend_name = "every-window-heard"

    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.labels = ["en", "de"]

    def predict(self, windows):
        return np.tile([0.7, 0.3], (len(windows), 1))


@pytest.fixture(scope="module")
def long_speech(audio_dir, tmp_path_factory):
    """About 20 s of uninterrupted speech at 16 kHz, to cut clips of any length from."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    run("sox", "-R", "-D", str(audio_dir / "en.wav"), "-r", "16000", "-c", "1", str(path), "repeat", "3")
    return path


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(5.5, 19.0), st.sampled_from(["auto", "spread:3x10", "whole:x4", "spread:5x6"]),
       st.sampled_from(["silero", "energy", "none"]))
@example(11.0, "auto", "silero")  # two windows overlapping by 9 s: 17.6 s of "speech" in 11.0 s before the fix
def test_speech_and_decoded_seconds_never_exceed_the_file(long_speech, tmp_path, duration, windows, vad):
    register_backend("every-window-heard", EveryWindowHeard)
    samples, rate = soundfile.read(long_speech, dtype="float32")
    clip = tmp_path / f"clip-{duration:.3f}.wav"
    soundfile.write(clip, samples[: int(duration * rate)], rate)
    (result,) = Identifier(models="every-window-heard", windows=windows, vad=vad).identify_batch([str(clip)])
    assert result.ok, result.error
    assert result.decoded_seconds <= result.duration + 1e-3
    assert result.speech_seconds <= result.decoded_seconds + 1e-3
    if vad == "none":  # every decoded second is speech
        assert result.speech_seconds == pytest.approx(result.decoded_seconds, abs=1e-3)
