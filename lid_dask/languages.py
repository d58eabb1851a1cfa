"""One language code set for every model.

Whisper says ``<|jw|>``, VoxLingua107 says ``jw: Javanese``, datasets say ``jav`` or ``Javanese``:
all become the shortest standard BCP-47 tag (``jv``) through langcodes, so models, labels and
allow-lists can be compared.
"""

from __future__ import annotations

import functools
import re

import langcodes
import numpy as np

UNKNOWN = "und"
_TOKEN = re.compile(r"^<\|(?P<code>[^|]+)\|>$")


@functools.lru_cache(maxsize=4096)
def to_code(label: str) -> str:
    """Normalise a model or dataset label to a standard tag; raise ValueError if it is no language.

    Accepts codes in any ISO 639 flavour (``en``, ``eng``, deprecated ``iw``/``jw``), Whisper tokens
    (``<|en|>``), VoxLingua107 labels (``en: English``), locale tags (``pt-BR`` keeps its region,
    ``en_US`` too) and English language names (``German``).
    """
    text = label.strip()
    if match := _TOKEN.match(text):
        text = match["code"]
    if ":" in text:  # "en: English"
        text = text.split(":", 1)[0].strip()
    text = text.replace("_", "-")
    try:
        tag = langcodes.standardize_tag(text, macro=True)
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        tag = None
    if tag is None or not langcodes.Language.get(tag).is_valid():
        try:
            tag = langcodes.find(label.strip()).to_tag()
        except LookupError:
            raise ValueError(f"{label!r} is not a language code or name") from None
    return tag


def base_language(tag: str) -> str:
    """The language alone (``pt-BR`` -> ``pt``): models predict languages, not regions."""
    return langcodes.Language.get(tag).language or UNKNOWN


def display_name(tag: str) -> str:
    """``"pt-BR"`` -> ``"Portuguese (Brazil)"``: the English name."""
    return langcodes.Language.get(tag).display_name()


def restrict(probabilities: np.ndarray, labels: list[str], allowed: list[str] | None) -> np.ndarray:
    """Keep only `allowed` languages and renormalise each row; rows with no mass stay all zero."""
    if not allowed:
        return probabilities
    keep = np.isin(labels, [base_language(to_code(a)) for a in allowed])
    restricted = np.where(keep, probabilities, 0.0)
    total = restricted.sum(axis=-1, keepdims=True)
    return np.divide(restricted, total, out=np.zeros_like(restricted), where=total > 0)


def check_allow_list(languages: list[str] | None, labels_by_model: dict[str, list[str] | None]) -> None:
    """An allow-list naming a language no model answers, or leaving a model nothing to answer,
    is a mistake to report now, not a failure of every file later. Models whose labels are
    unknown (None) are not checked."""
    if not languages:
        return
    wanted = {base_language(to_code(code)): code for code in languages}
    known = {model: {base_language(label) for label in labels}
             for model, labels in labels_by_model.items() if labels is not None}
    for model, answers in known.items():
        if not answers & set(wanted):
            raise ValueError(f"model {model} answers none of the languages {', '.join(languages)}")
    unanswered = [code for base, code in wanted.items() if not any(base in answers for answers in known.values())]
    if known and unanswered:
        raise ValueError(f"no model answers {', '.join(unanswered)}; "
                         f"the languages allowed must be among the models' own ({', '.join(known)})")
