"""Sentences to synthesise, mined from the gettext catalogs of the machine.

Why gettext: every Debian machine holds, under /usr/share/locale, human translations of
real user-interface and documentation strings in 80+ languages, with nothing to download.
They are noisy, so each string passes `clean()` (placeholders, markup, URLs, digits,
length) and then language-wide checks (English left untranslated, strings in another
script than the language's own, reversed Hebrew) before it may be spoken.
"""

from __future__ import annotations

import html
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import langcodes
import polib

LOCALE_DIR = Path("/usr/share/locale")

MIN_LENGTH = 25  # weighted characters (see `speech_weight`); shorter strings are UI labels
MAX_LENGTH = 150  # about 10 s of speech: longer strings are help paragraphs
SCRIPT_SHARE = 0.9  # share of a string's letters that must be in the language's own script

# Placeholders and format directives: a string holding one is dropped, not patched,
# since removing "%s" leaves a sentence with a hole in it.
_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.\d+)?(?:hh|h|ll|l|L|q|j|z|t|I)?[diouxXeEfFgGaAcsSpnm%]"
    r"|%\(\w+\)|%\{\w+\}"  # Python %(name)s, Ruby %{name}
    r"|\{[^{}]*\}"  # str.format {0} {name}
    r"|\$\{?\w+"  # shell $VAR ${VAR}
)
_URL = re.compile(r"(?:https?|ftp)://|www\.|\w\.(?:com|org|net|edu|gov|io)\b", re.IGNORECASE)
# Pango/HTML markup is removed; any other <...> (a "<filename>" placeholder) is left in
# place for _CODE_CHARS to reject the string.
_TAG = re.compile(r"</?(?:a|b|i|u|s|p|br|em|tt|big|small|span|sub|sup|strong|code)\b[^<>]*>", re.IGNORECASE)
# Menu accelerators: "_Open", "&Open", and the CJK style "打开(_O)" / "開く(&O)".
_ACCEL_SUFFIX = re.compile(r"\s*\((?:_|&)\w\)")
_ACCEL = re.compile(r"(?<![\w&])[_&](?=\w)")
# Characters of code, paths, usage texts and tables, not of sentences.
_CODE_CHARS = re.compile(r"[\\/<>{}\[\]|@#=*`^~$_&•→]|--|(?<!\w)-\w|\.\.|::|\t")
# Digits of any script, control and private-use characters, emoji and other symbols.
_DIGIT_OR_SYMBOL = re.compile(r"[\d\x00-\x1f\x7f-\x9f\ue000-\uf8ff\u2190-\u2bff\U0001f000-\U0001faff]")
_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u00ab": '"', "\u00bb": '"', "\u2039": "'", "\u203a": "'",
        "\u2013": "-", "\u2014": "-", "\u2026": "...",
        "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": "",
    }
)  # fmt: skip
_TERMINAL = tuple(".!?。！？।॥؟۔።")
_HEBREW_FINALS = set("ךםןףץ")
# Characters that stand for more than a sound: a Han character about two syllables,
# a kana one mora, a Hangul or Ethiopic letter a syllable (as Latin-letter equivalents).
_SYLLABLE_WEIGHT = {"CJK": 4.5, "HIRAGANA": 2.0, "KATAKANA": 2.0, "HANGUL": 2.5, "ETHIOPIC": 2.5}
# ISO 15924 script codes (as CLDR's likely subtags give them) -> `script_of` names.
_SCRIPT_NAMES = {
    "Latn": "LATIN", "Cyrl": "CYRILLIC", "Grek": "GREEK", "Armn": "ARMENIAN", "Geor": "GEORGIAN",
    "Arab": "ARABIC", "Hebr": "HEBREW", "Thaa": "THAANA", "Ethi": "ETHIOPIC", "Deva": "DEVANAGARI",
    "Beng": "BENGALI", "Guru": "GURMUKHI", "Gujr": "GUJARATI", "Orya": "ORIYA", "Taml": "TAMIL",
    "Telu": "TELUGU", "Knda": "KANNADA", "Mlym": "MALAYALAM", "Sinh": "SINHALA", "Thai": "THAI",
    "Laoo": "LAO", "Mymr": "MYANMAR", "Khmr": "KHMER", "Tibt": "TIBETAN",
    "Hans": "HAN", "Hant": "HAN", "Jpan": "HAN", "Kore": "HANGUL",
}  # fmt: skip


@cache
def script_of(char: str) -> str:
    """Script of a letter from its Unicode name ("CYRILLIC", "LATIN", ...).

    Han, kana and CJK symbols are one group ("HAN") because Japanese mixes them freely.
    """
    name = unicodedata.name(char, "")
    first = name.split(" ", 1)[0]
    if first in ("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "HALFWIDTH", "FULLWIDTH"):
        return "HAN"
    return first


def letter_scripts(text: str) -> Counter[str]:
    """How many letters of each script `text` holds (marks, digits, punctuation ignored)."""
    return Counter(script_of(c) for c in text if unicodedata.category(c).startswith("L"))


def speech_weight(text: str) -> float:
    """Length in "Latin-letter equivalents": about 14 of them make a second of speech.

    Syllabic characters weigh more (_SYLLABLE_WEIGHT), which keeps the length limits
    and the clip duration targets meaningful in every script.
    """
    return sum(_char_weight(c) for c in text)


@cache
def _char_weight(char: str) -> float:
    return _SYLLABLE_WEIGHT.get(unicodedata.name(char, "").split(" ", 1)[0], 1.0)


def estimated_seconds(text: str) -> float:
    """Rough speaking time of `text` at an engine's default rate."""
    return speech_weight(text) / 14.0


def is_reversed_hebrew(text: str) -> bool:
    """True for Hebrew stored in visual (reversed) order, as some old catalogs do.

    The final forms (ך ם ן ף ץ) end words; in reversed text they start them instead.
    """
    words = re.findall(r"[\u05d0-\u05ea]+", text)
    starts = sum(w[0] in _HEBREW_FINALS for w in words if len(w) > 1)
    ends = sum(w[-1] in _HEBREW_FINALS for w in words if len(w) > 1)
    return starts > ends


def clean(text: str) -> str | None:
    """One catalog string made speakable, or None when it is not a sentence.

    Markup tags, accelerators and typographic punctuation are removed or normalised;
    strings holding placeholders, URLs, digits or code-like characters are dropped,
    and so are strings outside MIN_LENGTH..MAX_LENGTH.
    """
    text = unicodedata.normalize("NFC", text)
    text = _TAG.sub("", text)
    text = _ACCEL_SUFFIX.sub("", text)
    text = _ACCEL.sub("", text)
    text = html.unescape(text).translate(_TYPOGRAPHY)
    text = " ".join(text.split())
    if (
        _PLACEHOLDER.search(text)
        or _URL.search(text)
        or _CODE_CHARS.search(text)
        or _DIGIT_OR_SYMBOL.search(text)
        or is_reversed_hebrew(text)
    ):
        return None
    if not MIN_LENGTH <= speech_weight(text) <= MAX_LENGTH:
        return None
    if sum(unicodedata.category(c)[0] in "LM" for c in text) < 0.6 * len(text.replace(" ", "")):
        return None  # mostly punctuation: tables, ASCII art
    return text


def locale_language(locale: str) -> str | None:
    """ISO code (639-1 where one exists) of a locale folder name, or None.

    Variants after "@" (sr@latin, ca@valencia, en@quot) and locales naming a script
    (zh_Hant) are left out: they repeat a language in another spelling or script.
    """
    if "@" in locale:
        return None
    try:
        tag = langcodes.Language.get(langcodes.standardize_tag(locale.replace("_", "-"), macro=True))
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return None
    if tag.script or not tag.language or not tag.is_valid():
        return None
    return tag.language


def catalog_locales(language: str, locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Locale folders holding catalogs in `language` (e.g. pt and pt_BR for "pt"), sorted."""
    return sorted(
        path
        for path in locale_dir.iterdir()
        if locale_language(path.name) == language and any((path / "LC_MESSAGES").glob("*.mo"))
    )


def catalog_pairs(language: str, locale_dir: Path = LOCALE_DIR) -> Iterable[tuple[str, str]]:
    """(msgid, msgstr) of every translated, non-plural entry, in a fixed order."""
    for locale in catalog_locales(language, locale_dir):
        for mo_path in sorted((locale / "LC_MESSAGES").glob("*.mo")):
            for entry in polib.mofile(str(mo_path)):
                if entry.msgstr and not entry.msgid_plural:
                    yield entry.msgid, entry.msgstr


def load_sentences(language: str, locale_dir: Path = LOCALE_DIR) -> list[str]:
    """Clean, distinct sentences of `language`, sorted.

    English comes from English locales (en_GB, ...), where msgstr == msgid is normal.
    For other languages a msgstr equal to its msgid, or to any msgid of the language's
    catalogs, is English left untranslated and is dropped. Then every string whose
    letters are not at least SCRIPT_SHARE in the language's script goes (English
    leaking into Russian, Shahmukhi pa_PK strings among Gurmukhi pa, ...).
    """
    pairs = list(catalog_pairs(language, locale_dir))
    msgids = {msgid.strip().casefold() for msgid, _ in pairs}
    candidates = set()
    for _, msgstr in pairs:
        if language != "en" and msgstr.strip().casefold() in msgids:
            continue
        sentence = clean(msgstr)
        if sentence:
            candidates.add(sentence)
    script = language_script(language) or dominant_script(candidates)
    return sorted(s for s in candidates if in_script(s, script))


def language_script(language: str) -> str | None:
    """The script `language` is usually written in (ru -> CYRILLIC), from CLDR via langcodes."""
    return _SCRIPT_NAMES.get(langcodes.Language.get(language).maximize().script or "")


def in_script(text: str, script: str) -> bool:
    """True when at least SCRIPT_SHARE of the letters of `text` are in `script`."""
    counts = letter_scripts(text)
    return counts[script] >= SCRIPT_SHARE * sum(counts.values())


def dominant_script(sentences: Iterable[str]) -> str:
    """The script most letters of `sentences` are written in."""
    totals = Counter()
    for sentence in sentences:
        totals.update(letter_scripts(sentence))
    return totals.most_common(1)[0][0] if totals else "LATIN"


class SentencePool:
    """A seeded, shuffled supply of one language's sentences, drawn without replacement.

    Clips of one language share a pool so that its voices and engines do not speak the
    same sentences; when the pool runs dry it is reshuffled and reused.
    """

    def __init__(self, sentences: list[str], rng: random.Random):
        self._all = list(sentences)
        self._rng = rng
        self._left: list[str] = []

    def draw(self, accept: Callable[[str], bool], max_tries: int = 300) -> str | None:
        """The next sentence that `accept` takes, or None after `max_tries` refusals."""
        refused: list[str] = []
        found = None
        for _ in range(min(max_tries, len(self._all))):
            if not self._left:
                self._left = self._all[:]
                self._rng.shuffle(self._left)
                refused = []  # they are back in the refilled pool
            candidate = self._left.pop()
            if accept(candidate):
                found = candidate
                break
            refused.append(candidate)
        self._left[:0] = refused  # refused sentences stay available for other voices
        return found

    def compose(self, target_s: float, max_s: float, accept: Callable[[str], bool]) -> str | None:
        """Join sentences until about `target_s` seconds of speech (never beyond `max_s`)."""
        parts: list[str] = []
        total = 0.0
        while total < target_s:
            sentence = self.draw(lambda s, room=max_s - total: estimated_seconds(s) <= room and accept(s))
            if sentence is None:
                break
            parts.append(sentence)
            total += estimated_seconds(sentence)
        return join(parts) if parts else None


def join(sentences: list[str]) -> str:
    """Sentences joined into one text, each ended by a full stop if it had none."""
    han = dominant_script(sentences) == "HAN"  # Chinese and Japanese put no spaces
    out = []
    for sentence in sentences:
        sentence = sentence.rstrip(" :;,")
        if not sentence.endswith(_TERMINAL):
            sentence += "。" if han else "."
        out.append(sentence)
    return ("" if han else " ").join(out)
