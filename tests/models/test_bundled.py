"""The bundled model is assembled once, verified, and safe to assemble from many processes."""

from __future__ import annotations

import multiprocessing

import pytest

from lid_dask.models.bundled import BUNDLED_SHA256, bundled_model_dir
from lid_dask.models.base import file_digest


def _assemble(cache: str) -> str:
    from pathlib import Path

    return str(bundled_model_dir(Path(cache)))


def test_concurrent_processes_build_one_verified_copy(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        folders = pool.map(_assemble, [str(tmp_path)] * 4)
    assert len(set(folders)) == 1
    folder = tmp_path / folders[0].rsplit("/", 1)[-1]
    assert file_digest(folder / "model.bin") == BUNDLED_SHA256
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "config.json", "model.bin",
                                                         "tokenizer.json", "vocabulary.txt"]
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_half_built_folder_is_rebuilt(tmp_path):
    folder = bundled_model_dir(tmp_path)
    (folder / ".complete").unlink()
    (folder / "model.bin").write_bytes(b"partial")
    assert file_digest(bundled_model_dir(tmp_path) / "model.bin") == BUNDLED_SHA256


def test_a_wrong_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    from lid_dask.models import bundled

    monkeypatch.setattr(bundled, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=f"checksum mismatch: got {BUNDLED_SHA256}, expected 0{{64}}"):
        bundled.bundled_model_dir(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []  # no staging, no model
