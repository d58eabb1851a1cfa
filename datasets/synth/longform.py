"""Long files (up to 30 minutes): a prefix, then Festival speech of the labelled language.

They test what short clips cannot: decoding only the windows a model needs, and a start
that is not the language of the file (silence, noise, music-like tones, or speech in
another language, named in the manifest's `prefix`). Each piece is a small wav on disk
and sox streams them together, so no 30-minute array is ever held in memory.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import audio
from .render import ClipFailed, file_facts, synthesise
from .sentences import SentencePool, join, load_sentences
from .voices import FESTIVAL_BY_NAME, FESTIVAL_VOICES, festival_accepts, festival_installed

PREFIXES = ("speech", "noise", "tones", "silence")
LONG_FORMATS = ("mp3", "ogg", "m4a", "flac")
SEGMENT_SECONDS = 60.0  # text per text2wave call: few calls, and little lost if one fails
MAX_FAILED_SEGMENTS = 5


@dataclass(frozen=True)
class LongSpec:
    uri: str
    language: str
    voice: str  # Festival voice of the labelled speech
    seconds: float  # total length
    prefix: str  # silence | noise | tones | speech
    prefix_voice: str  # Festival voice of a speech prefix (another language), else ""
    prefix_s: float
    format: str
    quality: str
    sample_rate: int
    seed: int


def plan_long(count: int, minutes: float, seed: int) -> list[LongSpec]:
    """`count` long files: languages, prefixes and formats taken in turn from shuffled lists."""
    rng = random.Random(f"{seed}|long")
    voices = [v for v in FESTIVAL_VOICES if festival_installed(v)]
    languages = sorted({v.language for v in voices})
    rng.shuffle(languages)
    prefixes, formats = list(PREFIXES), list(LONG_FORMATS)
    rng.shuffle(prefixes)
    rng.shuffle(formats)
    specs = []
    for i in range(count):
        language = languages[i % len(languages)]
        voice = rng.choice([v.name for v in voices if v.language == language])
        prefix = prefixes[i % len(prefixes)]
        others = [v.name for v in voices if v.language != language]
        fmt = formats[i % len(formats)]
        seconds = minutes * 60
        specs.append(
            LongSpec(
                uri=f"long/{language}-long-{i:02d}.{audio.FORMATS[fmt].ext}",
                language=language,
                voice=voice,
                seconds=seconds,
                prefix=prefix,
                prefix_voice=rng.choice(others) if prefix == "speech" else "",
                prefix_s=round(rng.uniform(min(20.0, seconds / 4), min(240.0, seconds / 4)), 1),
                format=fmt,
                quality=rng.choice(audio.FORMATS[fmt].qualities),
                sample_rate=rng.choice((16000, 22050)),
                seed=rng.getrandbits(32),
            )
        )
    return specs


def speech(
    voice_name: str, seconds: float, rate: int, pool: SentencePool, tmp: Path, tag: str
) -> tuple[list[Path], list[str]]:
    """Festival segments of `voice_name` adding up to at least `seconds`; (wavs, texts)."""
    voice = FESTIVAL_BY_NAME[voice_name]
    parts, texts, total, failed = [], [], 0.0, 0
    while total < seconds:
        text = pool.compose(SEGMENT_SECONDS, SEGMENT_SECONDS * 1.5, lambda s: festival_accepts(voice, s))
        if text is None:
            raise ClipFailed(f"no speakable sentences for {voice_name}")
        raw, part = tmp / f"{tag}-raw.wav", tmp / f"{tag}-{len(parts):04d}.wav"
        try:
            synthesise("festival", voice_name, text, 1.0, 0.0, raw)
        except ClipFailed:
            failed += 1
            if failed > MAX_FAILED_SEGMENTS:
                raise
            continue
        audio.sox_effects(raw, part, rate)
        parts.append(part)
        texts.append(text)
        total += sf.info(part).duration
    return parts, texts


def tones(dst: Path, seconds: float, rate: int, rng: random.Random) -> None:
    """Music-like tones: an 8 s pentatonic phrase of plucked notes with harmonics, looped."""
    note_s, notes = 0.25, 32
    t = np.arange(int(note_s * rate)) / rate
    envelope = np.exp(-t * 6.0)
    scale = [0, 2, 4, 7, 9, 12, 14, 16]
    phrase = []
    for _ in range(notes):
        freq = 220.0 * 2 ** (rng.choice(scale) / 12)
        wave = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in (1, 2, 3, 4))
        phrase.append(0.25 * envelope * wave)
    loop = dst.with_name("phrase.wav")
    sf.write(loop, np.concatenate(phrase), rate, subtype="PCM_16")
    repeats = int(np.ceil(seconds / (note_s * notes)))
    subprocess.run([*audio.SOX, str(loop), str(dst), "repeat", str(repeats), "trim", "0", f"{seconds:.3f}"],
                   check=True, capture_output=True)  # fmt: skip


def prefix_audio(spec: LongSpec, tmp: Path, seed: int) -> list[Path]:
    """The prefix as wav files at the file's rate (mono, 16-bit)."""
    dst = tmp / "prefix.wav"
    rng = random.Random(f"{seed}|prefix|{spec.uri}")
    if spec.prefix == "silence":
        audio.silence(dst, spec.prefix_s, spec.sample_rate)
    elif spec.prefix == "noise":  # sox's noise generator is repeatable under -R
        kind = rng.choice(("whitenoise", "pinknoise", "brownnoise"))
        synth = ["synth", f"{spec.prefix_s:.3f}", kind, "vol", "0.05"]
        subprocess.run([*audio.SOX, "-n", "-r", str(spec.sample_rate), "-b", "16", "-c", "1", str(dst), *synth],
                       check=True, capture_output=True)  # fmt: skip
    elif spec.prefix == "tones":
        tones(dst, spec.prefix_s, spec.sample_rate, rng)
    else:
        other = FESTIVAL_BY_NAME[spec.prefix_voice].language
        pool = SentencePool(load_sentences(other), random.Random(f"{seed}|prefix-pool|{spec.uri}"))
        parts, _ = speech(spec.prefix_voice, spec.prefix_s, spec.sample_rate, pool, tmp, "prefix")
        audio.concatenate(parts, dst, spec.prefix_s)
    return [dst]


def render_long(spec: LongSpec, out_dir: Path, seed: int) -> dict:
    """Make the long file of `spec` under `out_dir`; its manifest row."""
    fmt = audio.FORMATS[spec.format]
    pool = SentencePool(load_sentences(spec.language), random.Random(f"{seed}|long-pool|{spec.uri}"))
    with tempfile.TemporaryDirectory(prefix="synth-long-") as tmp_name:
        tmp = Path(tmp_name)
        prefix = prefix_audio(spec, tmp, seed)
        parts, texts = speech(spec.voice, spec.seconds - spec.prefix_s, spec.sample_rate, pool, tmp, "speech")
        full = tmp / "full.wav"
        audio.concatenate(prefix + parts, full, spec.seconds)
        target = out_dir / spec.uri
        target.parent.mkdir(parents=True, exist_ok=True)
        audio.encode(full, target, fmt, spec.quality, 1)
    return {
        "uri": spec.uri,
        "language": spec.language,
        "engine": "festival",
        "voice": spec.voice,
        "text": join(texts),
        "codec": fmt.codec,
        "container": fmt.container,
        "video": fmt.video,
        "quality": spec.quality,
        "sample_rate": spec.sample_rate,
        "channels": 1,
        "speed": 1.0,
        "pitch": 0.0,
        "noise": "",
        "snr_db": "",
        "kind": "long",
        "prefix": f"speech:{FESTIVAL_BY_NAME[spec.prefix_voice].language}" if spec.prefix == "speech" else spec.prefix,
        "prefix_s": spec.prefix_s,
        **file_facts(target),
    }
