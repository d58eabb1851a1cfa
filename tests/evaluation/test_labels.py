"""Ground-truth loaders on small trees in the real layouts."""

from __future__ import annotations

import fsspec
import pandas as pd
import pytest

from lid_dask.evaluation.labels import (canonical_uri, load_common_voice, load_fleurs, load_labels, load_table,
                                        load_voxlingua)

from .conftest import write_common_voice, write_fleurs, write_voxlingua


def by_uri(labels) -> dict[str, str]:
    return dict(zip(labels.frame["uri"], labels.frame["language"]))


def test_common_voice_release_folder(tmp_path):
    root = write_common_voice(tmp_path / "cv-corpus")
    labels = load_common_voice(str(root), split="test")
    assert by_uri(labels) == {
        str(root / "en/clips/common_voice_en_1.mp3"): "en",
        str(root / "en/clips/common_voice_en_2.mp3"): "en",
        str(root / "zh-CN/clips/common_voice_zh-CN_1.mp3"): "zh",
    }
    assert labels.frame.set_index("language").loc["zh", "raw_label"] == "zh-CN"
    assert labels.unknown == {"tok": 1}  # reported, not silently dropped
    assert "tok" in labels.summary()


def test_common_voice_split_locales_and_single_locale_folder(tmp_path):
    root = write_common_voice(tmp_path / "cv")
    assert len(load_common_voice(str(root), split="dev").frame) == 2  # en and zh-CN, one row each
    only_en = load_common_voice(str(root), split="test", locales=["en"])
    assert set(only_en.frame["language"]) == {"en"} and len(only_en.frame) == 2
    single = load_common_voice(str(root / "zh-CN"), split="test")
    assert list(single.frame["language"]) == ["zh"]
    with pytest.raises(FileNotFoundError):
        load_common_voice(str(root), split="train")


def test_common_voice_on_an_fsspec_url(tmp_path):
    memory = fsspec.filesystem("memory")
    local = write_common_voice(tmp_path / "cv")
    for path in local.rglob("*"):
        if path.is_file():
            memory.pipe(f"/cvmem/{path.relative_to(local)}", path.read_bytes())
    labels = load_labels("memory://cvmem", split="test")
    assert "memory:///cvmem/en/clips/common_voice_en_1.mp3" in by_uri(labels)
    assert len(labels.frame) == 3


def test_fleurs(tmp_path):
    root = write_fleurs(tmp_path / "fleurs")
    labels = load_fleurs(str(root), split="test")
    assert by_uri(labels) == {
        str(root / "en_us/audio/test/10001.wav"): "en",
        str(root / "en_us/audio/test/10002.wav"): "en",
        str(root / "cmn_hans_cn/audio/test/20001.wav"): "zh",
    }
    assert labels.unknown == {"xx_yy": 1}


def test_voxlingua_folders(tmp_path):
    root = write_voxlingua(tmp_path / "vox")
    labels = load_voxlingua(str(root))
    assert by_uri(labels) == {
        str(root / "en/a.wav"): "en", str(root / "en/b.wav"): "en",
        str(root / "iw/c.wav"): "he", str(root / "jw/sub/d.wav"): "jv",
    }
    assert labels.unknown == {"qqq-notalang": 1}


def test_csv_with_relative_absolute_and_url_uris(tmp_path):
    folder = tmp_path / "set"
    table = pd.DataFrame({
        "uri": ["a/one.wav", "./two.flac", "/abs/three.wav", "s3://bucket/four.mp3", "five.wav", "six.wav", "six.wav"],
        "language": ["en", "German", "pt-BR", "<|fr|>", "no such language", "it", "es"],
        "split": ["dev", "holdout", "dev", "dev", "dev", "dev", "dev"],
    })
    folder.mkdir()
    table.to_csv(folder / "manifest.csv", index=False)
    labels = load_table(str(folder / "manifest.csv"), keep=["split"])
    assert by_uri(labels) == {
        str(folder / "a/one.wav"): "en", str(folder / "two.flac"): "de", "/abs/three.wav": "pt",
        "s3://bucket/four.mp3": "fr", str(folder / "six.wav"): "it",
    }
    assert labels.unknown == {"no such language": 1}
    assert labels.conflicts == 1  # six.wav listed as it and es: first kept, counted
    assert list(labels.frame.columns) == ["uri", "language", "raw_label", "split"]
    assert labels.frame.set_index("language").loc["de", "split"] == "holdout"


def test_parquet_and_tsv_with_other_column_names(tmp_path):
    table = pd.DataFrame({"path": ["x.wav", "y.wav"], "lang": ["fi", "cs"]})
    table.to_parquet(tmp_path / "labels.parquet")
    table.to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    for name in ("labels.parquet", "labels.tsv"):
        labels = load_labels(str(tmp_path / name), uri_column="path", language_column="lang")
        assert by_uri(labels) == {str(tmp_path / "x.wav"): "fi", str(tmp_path / "y.wav"): "cs"}


def test_auto_detection(tmp_path):
    assert set(load_labels(str(write_common_voice(tmp_path / "cv"))).frame["language"]) == {"en", "zh"}
    assert set(load_labels(str(write_fleurs(tmp_path / "fl"))).frame["language"]) == {"en", "zh"}
    assert set(load_labels(str(write_voxlingua(tmp_path / "vx"))).frame["language"]) == {"en", "he", "jv"}
    with pytest.raises(ValueError, match="unknown label kind"):
        load_labels(str(tmp_path), kind="nope")


def test_canonical_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert canonical_uri("a/../b.wav") == str(tmp_path / "b.wav")
    assert canonical_uri("file:///x/./y.wav") == "/x/y.wav"
    assert canonical_uri("s3://bucket/k.wav") == "s3://bucket/k.wav"
