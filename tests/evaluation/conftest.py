"""Fixtures for the evaluation tests: small ground-truth trees in the real published layouts,
and evaluation frames with known properties. Audio files are empty placeholders: loaders only
list and join paths, they never decode."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from lid_dask.evaluation.metrics import evaluate

# Common Voice TSVs as Mozilla writes them (sentences with stray quotes, no quoting)
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"


@pytest.fixture(autouse=True, scope="package")
def _synchronous_dask():
    """Tiny frames: the threaded scheduler's overhead would dominate the tests' time."""
    with dask.config.set(scheduler="synchronous"):
        yield


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_common_voice(root: Path) -> Path:
    """A release folder: en and zh-CN with test/dev TSVs and clips, plus tok (no known code)."""
    rows = {
        "en": [("c1", "common_voice_en_1.mp3", 'He said "hello', "en"), ("c2", "common_voice_en_2.mp3", "Fine.", "en")],
        "zh-CN": [("c3", "common_voice_zh-CN_1.mp3", "你好", "zh-CN")],
        "tok": [("c4", "common_voice_tok_1.mp3", "toki pona", "tok")],
    }
    for locale, entries in rows.items():
        folder = root / locale
        folder.mkdir(parents=True)
        lines = [f"{client}\t{path}\t{text}\t2\t0\t\t\t\t\t{loc}\t\n" for client, path, text, loc in entries]
        (folder / "test.tsv").write_text(CV_HEADER + "".join(lines), encoding="utf-8")
        (folder / "dev.tsv").write_text(CV_HEADER + lines[0], encoding="utf-8")
        for _, path, _, _ in entries:
            touch(folder / "clips" / path)
    return root


def write_fleurs(root: Path) -> Path:
    """FLEURS: <lang>/<split>.tsv without header, audio in <lang>/audio/<split>/."""
    rows = {"en_us": ["1001\t10001.wav\tHello there.\thello there\th e l l o\t96000\tFEMALE",
                      "1002\t10002.wav\tA \"quoted\" word.\ta quoted word\ta q\t64000\tMALE"],
            "cmn_hans_cn": ["2001\t20001.wav\t你好\t你好\t你 好\t80000\tMALE"],
            "xx_yy": ["3001\t30001.wav\tzzz\tzzz\tz z z\t16000\tMALE"]}
    for lang, lines in rows.items():
        folder = root / lang
        folder.mkdir(parents=True)
        (folder / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for line in lines:
            touch(folder / "audio" / "test" / line.split("\t")[1])
    return root


def write_voxlingua(root: Path) -> Path:
    """One folder per language code (VoxLingua107 uses iw/jw), plus things to ignore."""
    files = {"en": ["a.wav", "b.wav"], "iw": ["c.wav"], "jw": ["sub/d.wav"], "qqq-notalang": ["e.wav"]}
    for code, names in files.items():
        for name in names:
            touch(root / code / name)
    touch(root / "en" / "README.txt")
    touch(root / "loose.wav")
    return root


def random_frame(seed: int, n: int = 3000, languages=("en", "de", "fr", "it", "cs", "fi"), models=("a", "consensus"),
                 accuracy: float = 0.7) -> pd.DataFrame:
    """Predictions with nulls, languages only predicted (``xx``), agreement and review columns."""
    rng = np.random.default_rng(seed)
    label = rng.choice(languages, n, p=np.linspace(2, 1, len(languages)) / np.linspace(2, 1, len(languages)).sum())
    frames = []
    for model in models:
        ok = rng.random(n) < accuracy
        predicted = np.where(ok, label, rng.choice([*languages, "xx"], n)).astype(object)
        predicted[rng.random(n) < 0.05] = None
        frames.append(pd.DataFrame({
            "uri": [f"/data/{i}.wav" for i in range(n)], "model": model, "predicted": predicted,
            "confidence": np.where(ok, rng.beta(6, 2, n), rng.beta(3, 3, n)), "label": label,
            "agreement": rng.choice(["unanimous", "majority", "split"], n), "needs_review": rng.random(n) < 0.3,
        }))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return random_frame(0)


@pytest.fixture(scope="session")
def dataset(frame):
    return evaluate(frame, chunksize=1000)
