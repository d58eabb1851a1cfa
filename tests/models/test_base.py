"""Model specs and checksums: what every backend shares (no model is loaded here)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lid_dask.models.base import ModelSpec, file_digest


def test_a_spec_parses_into_backend_source_and_options():
    spec = ModelSpec.parse(" whisper-ct2:bundled?compute_type=int8&context=30 ")
    assert spec == ModelSpec("whisper-ct2", "bundled", {"compute_type": "int8", "context": "30"})
    assert str(spec) == "whisper-ct2:bundled?compute_type=int8&context=30"
    assert ModelSpec.parse("whisper-hf") == ModelSpec("whisper-hf")
    assert ModelSpec.parse("whisper-hf:/models/x?").options == {}


def test_option_values_are_taken_as_written():
    """No URL decoding: a spec's string is part of the model fingerprint, so ``str(parse(s))`` must
    give `s` back (sorted) for every value, and ``%``, ``+`` and ``:`` keep their meaning here."""
    text = "whisper-ct2:/m?recheck=la:0.37,sw&a=b+c&p=%2C&q=x=y&z="
    spec = ModelSpec.parse(text)
    assert spec.options == {"recheck": "la:0.37,sw", "a": "b+c", "p": "%2C", "q": "x=y", "z": ""}
    assert str(spec) == "whisper-ct2:/m?a=b+c&p=%2C&q=x=y&recheck=la:0.37,sw&z="
    assert ModelSpec.parse(str(spec)) == spec


def test_empty_pairs_are_skipped_and_a_later_key_wins():
    assert ModelSpec.parse("m?&a=1&&a=2&").options == {"a": "2"}


@pytest.mark.parametrize("text, pair", [("whisper-ct2?int8", "int8"), ("m:s?a=1&fast", "fast")])
def test_an_option_without_a_value_is_a_clear_error(text, pair):
    with pytest.raises(ValueError, match=rf"bad model option '{pair}' in .*; expected key=value"):
        ModelSpec.parse(text)


@pytest.mark.parametrize("text", ["", "  ", ":source", "?a=1"])
def test_a_spec_without_a_backend_is_an_error(text):
    with pytest.raises(ValueError, match="empty model spec"):
        ModelSpec.parse(text)


@pytest.mark.parametrize("size", [0, 1, (1 << 18) - 1, 3 * (1 << 18) + 5])
def test_file_digest_is_the_sha256_of_the_bytes(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "weights").write_bytes(data)
    assert file_digest(tmp_path / "weights") == hashlib.sha256(data).hexdigest()
    assert file_digest(str(tmp_path / "weights")) == hashlib.sha256(data).hexdigest()
