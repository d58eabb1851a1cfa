"""The two speech engines: which voices exist, what text each accepts, how to call it.

Festival voices are built from recordings of human speakers: the accuracy claims rest on
them. espeak-ng is a formant synthesiser: about 100 languages, but robotic; it gives
breadth and hard cases. The manifest keeps the two apart (column `engine`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import langcodes

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


@dataclass(frozen=True)
class FestivalVoice:
    name: str
    language: str
    encoding: str  # the voice reads bytes in this charset, not UTF-8
    latin_letters: bool  # False: Latin letters and digits crash the voice or are misread
    pace: float = 1.0  # speaking time / sentences.estimated_seconds, as measured (slow voices > 1)


# Debian packages: festvox-kallpc16k, -kdlpc16k, -us-slt-hts, -italp16k, -itapc16k, -ru,
# -czech-dita, -czech-krb, -czech-machac, -czech-ph, -suopuhe-lj, -suopuhe-mv,
# -ca-ona-hts, -hi-nsk, -mr-nsk, -te-nsk.
FESTIVAL_VOICES = (
    FestivalVoice("kal_diphone", "en", "utf-8", True),
    FestivalVoice("ked_diphone", "en", "utf-8", True),
    FestivalVoice("cmu_us_slt_arctic_hts", "en", "utf-8", True),
    FestivalVoice("lp_diphone", "it", "iso-8859-1", True),
    FestivalVoice("pc_diphone", "it", "iso-8859-1", True),
    FestivalVoice("msu_ru_nsh_clunits", "ru", "utf-8", False, 1.1),
    FestivalVoice("czech_dita", "cs", "iso-8859-2", True, 1.1),
    FestivalVoice("czech_krb", "cs", "iso-8859-2", True, 1.1),
    FestivalVoice("czech_machac", "cs", "iso-8859-2", True, 1.1),
    FestivalVoice("czech_ph", "cs", "iso-8859-2", True, 1.1),
    FestivalVoice("suo_fi_lj_diphone", "fi", "iso-8859-1", True),
    FestivalVoice("hy_fi_mv_diphone", "fi", "iso-8859-1", True),
    FestivalVoice("upc_ca_ona_hts", "ca", "iso-8859-15", True),
    FestivalVoice("hindi_NSK_diphone", "hi", "utf-8", False, 1.15),
    FestivalVoice("marathi_NSK_diphone", "mr", "utf-8", False, 1.45),
    FestivalVoice("telugu_NSK_diphone", "te", "utf-8", False, 1.35),
)
FESTIVAL_BY_NAME = {voice.name: voice for voice in FESTIVAL_VOICES}

_LATIN_OR_DIGIT = re.compile(r"[A-Za-z0-9]")


def festival_installed(voice: FestivalVoice) -> bool:
    """True when the voice's Debian package is installed."""
    return any(FESTIVAL_VOICE_DIR.glob(f"*/{voice.name}"))


def festival_accepts(voice: FestivalVoice, text: str) -> bool:
    """True when `voice` can read `text`: it fits the voice's charset, and holds no
    Latin letters or digits for the voices that crash on them."""
    try:
        text.encode(voice.encoding)
    except UnicodeEncodeError:
        return False
    return voice.latin_letters or not _LATIN_OR_DIGIT.search(text)


def festival_synth(voice: FestivalVoice, text: str, wav: Path, timeout: float = 300) -> None:
    """Speak `text` into `wav` (the voice's own sample rate) with text2wave."""
    text_file = wav.with_suffix(".txt")
    text_file.write_bytes(text.encode(voice.encoding) + b"\n")
    done = subprocess.run(
        ["text2wave", "-eval", f"(voice_{voice.name})", "-o", str(wav), str(text_file)],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    text_file.unlink()
    # Festival exits 0 after an error (the Finnish voices on "yyz", the Russian one on
    # "т.е."), leaving an empty or partial file: its message makes it a failure.
    if b"SIOD ERROR" in done.stderr or not wav.exists() or wav.stat().st_size <= 44:
        raise subprocess.CalledProcessError(1, done.args, done.stdout, done.stderr)


# espeak-ng voice variants (espeak-ng --voices=variant): male, female and a few odd ones.
ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "f1", "f2", "f3", "f4", "f5", "klatt", "croak", "whisperf",
)  # fmt: skip


def espeak_iso(espeak_language: str) -> str | None:
    """ISO code of an espeak-ng language name (cmn -> zh, en-gb-scotland -> en), or None
    for names in another script than the language's own (fa-latn, cmn-latn-pinyin) and
    for invented or unknown languages."""
    try:
        tag = langcodes.Language.get(langcodes.standardize_tag(espeak_language, macro=True))
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return None
    if tag.script or not tag.is_valid() or not tag.language or tag.language.startswith("q"):
        return None
    return tag.language


@cache
def espeak_voices() -> dict[str, tuple[str, ...]]:
    """ISO code -> espeak-ng voice names for it (en -> en-gb, en-us, ...), from `--voices`."""
    listing = subprocess.run(["espeak-ng", "--voices"], check=True, capture_output=True, text=True).stdout
    voices: dict[str, list[str]] = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and (iso := espeak_iso(fields[1])):
            voices.setdefault(iso, []).append(fields[1])
    return {iso: tuple(sorted(set(names))) for iso, names in sorted(voices.items())}


def espeak_reads_natively(voice: str, text: str) -> bool:
    """True when espeak-ng reads all of `text` with `voice`'s own rules.

    espeak-ng switches to another language for words it cannot read (English for a
    Latin brand name in Russian, "Chinese letter" for each kanji in Japanese); its
    phoneme output marks each switch as "(en)". Such text would mislabel the clip.
    """
    phonemes = subprocess.run(
        ["espeak-ng", "-q", "-x", "-v", voice, "--stdin"], input=text, check=True, capture_output=True, text=True
    ).stdout
    return not re.search(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)", phonemes)


def espeak_synth(voice: str, variant: str, words_per_minute: int, pitch: int, text: str, wav: Path) -> None:
    """Speak `text` into `wav` (22.05 kHz) with espeak-ng."""
    name = f"{voice}+{variant}" if variant else voice
    subprocess.run(
        ["espeak-ng", "-v", name, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(wav), "--stdin"],
        input=text,
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )
