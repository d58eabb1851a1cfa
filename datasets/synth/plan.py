"""What to synthesise: one `ClipSpec` per clip, drawn deterministically from a seed.

Everything random is drawn here, from `random.Random` streams named after the seed and
the clip (string seeds hash with SHA-512, so no PYTHONHASHSEED dependence); rendering
then only carries the spec out. A clip's parameters depend on its own name only, and
its text on the clips of its language planned before it, so a build is repeatable and
changing one language's clips leaves every other language as it was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

from . import audio
from .sentences import SentencePool, estimated_seconds, load_sentences
from .voices import (
    ESPEAK_VARIANTS,
    FESTIVAL_BY_NAME,
    espeak_reads_natively,
    espeak_voices,
    festival_accepts,
)

ESPEAK_DEFAULT_WPM = 175
MIN_SENTENCES = 20  # a language with fewer clean sentences is left out


@dataclass(frozen=True)
class Profile:
    """The distributions clip parameters are drawn from."""

    formats: tuple[tuple[str, float], ...]  # (format, weight)
    sample_rates: tuple[tuple[int, float], ...]  # (Hz, weight)
    clip_seconds: tuple[float, float]  # speech duration aimed at
    max_seconds: float  # never join sentences beyond this
    p_tempo: float  # Festival: share of clips sped up or slowed down (sox tempo)
    tempo: tuple[float, float]
    p_pitch: float  # Festival: share of clips shifted in pitch (sox pitch)
    semitones: tuple[float, float]
    espeak_wpm: tuple[int, int]  # espeak-ng -s
    espeak_pitch: tuple[int, int]  # espeak-ng -p (0-99, 50 is its default)
    espeak_variants: tuple[str, ...]  # espeak-ng voice variants: "" (none), "f2", "m3", ...
    p_noise: float
    snr_db: tuple[float, ...]
    noise_kinds: tuple[str, ...]
    p_stereo: float
    format_cycle: tuple[tuple[str, int, str], ...] = ()  # if set: clip i gets entry i mod n (format, Hz, quality)
    flat: bool = False  # all files in the output folder itself, no engine/language folders


DEFAULT = Profile(
    formats=(("wav", 12), ("flac", 14), ("mp3", 20), ("ogg", 14), ("opus", 14), ("m4a", 14),
             ("webm", 5), ("mp4", 4), ("mkv", 3)),  # fmt: skip
    sample_rates=((8000, 15), (16000, 35), (22050, 20), (44100, 15), (48000, 15)),
    clip_seconds=(3.0, 8.0),
    max_seconds=8.5,
    p_tempo=0.5,
    tempo=(0.85, 1.15),
    p_pitch=0.4,
    semitones=(-2.0, 2.0),
    espeak_wpm=(130, 210),
    espeak_pitch=(25, 75),
    espeak_variants=ESPEAK_VARIANTS,
    p_noise=0.35,
    snr_db=(5.0, 10.0, 15.0, 20.0, 30.0),
    noise_kinds=("white", "pink", "brown"),
    p_stereo=0.15,
)

# The committed sample set: clean, natural-rate speech of 4-8 s, small lossy files,
# and every common format at least once (format_cycle).
SAMPLES = Profile(
    formats=(),
    sample_rates=(),
    clip_seconds=(4.5, 6.0),
    max_seconds=6.5,
    p_tempo=0.0,
    tempo=(1.0, 1.0),
    p_pitch=0.0,
    semitones=(0.0, 0.0),
    espeak_wpm=(160, 190),
    espeak_pitch=(40, 60),
    espeak_variants=("", "m3", "f2", "f4"),
    p_noise=0.1,
    snr_db=(20.0,),
    noise_kinds=("pink",),
    p_stereo=0.0,
    # Low bit rates keep the set under 1 MB; wav and flac at 8 kHz for the same reason.
    format_cycle=(("opus", 16000, "16k"), ("mp3", 16000, "32k"), ("ogg", 16000, "q1"), ("m4a", 16000, "32k"),
                  ("opus", 16000, "16k"), ("wav", 8000, ""), ("mp3", 22050, "32k"), ("opus", 16000, "16k"),
                  ("ogg", 16000, "q1"), ("m4a", 16000, "32k"), ("flac", 8000, ""), ("opus", 16000, "16k"),
                  ("mp3", 16000, "32k"), ("opus", 16000, "16k"), ("ogg", 16000, "q1"), ("m4a", 16000, "32k"),
                  ("opus", 16000, "16k"), ("mp3", 16000, "32k"), ("opus", 16000, "16k"), ("ogg", 16000, "q1"),
                  ("opus", 16000, "16k")),  # fmt: skip
    flat=True,
)


@dataclass(frozen=True)
class Slot:
    """A clip to plan: engine, festival voice name or (espeak-ng) language, number."""

    engine: str  # festival | espeak-ng
    language: str
    voice: str  # festival voice name; "" for espeak-ng (drawn per clip)
    index: int
    order: int  # position in the whole build, for Profile.format_cycle

    @property
    def key(self) -> str:
        return f"{self.engine}|{self.voice or self.language}|{self.index}"


@dataclass(frozen=True)
class ClipSpec:
    uri: str
    language: str
    engine: str
    voice: str  # festival voice, or espeak-ng voice[+variant]
    text: str
    speed: float  # relative to the engine's default rate
    pitch: float  # Festival: semitones shifted by sox; espeak-ng: its -p value (default 50)
    noise: str  # "" when clean
    snr_db: float | None
    sample_rate: int
    channels: int
    format: str  # key of audio.FORMATS
    quality: str
    seed: int  # for the noise generator


def _weighted(rng: random.Random, choices: tuple[tuple, ...]):
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def _output(rng: random.Random, profile: Profile, slot: Slot) -> tuple[str, int, str]:
    """(format, sample rate, quality) of a clip."""
    if profile.format_cycle:
        return profile.format_cycle[slot.order % len(profile.format_cycle)]
    name = _weighted(rng, profile.formats)
    fmt = audio.FORMATS[name]
    rates = tuple((r, w) for r, w in profile.sample_rates if not fmt.sample_rates or r in fmt.sample_rates)
    rate = _weighted(rng, rates)
    # At 8 kHz, lame and the aac encoder cap the bit rate near 48-64 kbit/s: don't claim more.
    qualities = [q for q in fmt.qualities if rate > 8000 or not q.endswith("k") or int(q[:-1]) <= 48]
    qualities = qualities or [fmt.qualities[0]]
    return name, rate, rng.choice(qualities)


def uri_of(slot: Slot, voice_tag: str, ext: str, flat: bool) -> str:
    engine = "espeak" if slot.engine == "espeak-ng" else slot.engine
    name = f"{slot.language}-{engine}-{voice_tag}-{slot.index:03d}.{ext}"
    return name if flat else f"{slot.engine}/{slot.language}/{name}"


def plan_language(
    language: str, slots: list[Slot], profile: Profile, seed: int
) -> tuple[list[ClipSpec], list[tuple[str, str]]]:
    """Specs for the `slots` of one language, and (slot, reason) for those left unplanned."""
    sentences = load_sentences(language)
    if len(sentences) < MIN_SENTENCES:
        return [], [(s.key, f"only {len(sentences)} clean sentences in {language}") for s in slots]
    pool = SentencePool(sentences, random.Random(f"{seed}|pool|{language}"))
    specs, skipped = [], []
    exhausted: set[str] = set()  # voices that found nothing to read: don't search again
    for slot in slots:
        rng = random.Random(f"{seed}|{slot.key}")
        target = rng.uniform(*profile.clip_seconds)
        if slot.engine == "festival":
            voice = FESTIVAL_BY_NAME[slot.voice]
            speed = round(rng.uniform(*profile.tempo), 3) if rng.random() < profile.p_tempo else 1.0
            pitch = round(rng.uniform(*profile.semitones), 1) if rng.random() < profile.p_pitch else 0.0
            accept = partial(festival_accepts, voice)
            voice_name = voice_tag = voice.name
            text_rate = speed / voice.pace  # seconds of estimated text per second of speech
        else:
            voice_tag = rng.choice(espeak_voices()[language])
            variant = rng.choice(profile.espeak_variants)
            wpm = rng.randint(*profile.espeak_wpm)
            speed = round(wpm / ESPEAK_DEFAULT_WPM, 3)
            pitch = float(rng.randint(*profile.espeak_pitch))
            accept = partial(espeak_reads_natively, voice_tag)
            voice_name = f"{voice_tag}+{variant}" if variant else voice_tag
            text_rate = speed
        noisy = rng.random() < profile.p_noise
        noise = rng.choice(profile.noise_kinds) if noisy else ""
        snr_db = rng.choice(profile.snr_db) if noisy else None
        channels = 2 if rng.random() < profile.p_stereo else 1
        fmt, sample_rate, quality = _output(rng, profile, slot)
        # Sentences are measured at a default pace; a faster voice needs more text.
        text = None
        if voice_tag not in exhausted:
            text = pool.compose(target * text_rate, profile.max_seconds * text_rate, accept)
        if text is None or estimated_seconds(text) < 0.8 * profile.clip_seconds[0] * text_rate:
            exhausted.add(voice_tag)
            skipped.append((slot.key, f"too few sentences {voice_tag} can read"))
            continue
        specs.append(
            ClipSpec(
                uri=uri_of(slot, voice_tag, audio.FORMATS[fmt].ext, profile.flat),
                language=language,
                engine=slot.engine,
                voice=voice_name,
                text=text,
                speed=speed,
                pitch=pitch,
                noise=noise,
                snr_db=snr_db,
                sample_rate=sample_rate,
                channels=channels,
                format=fmt,
                quality=quality,
                seed=rng.getrandbits(32),
            )
        )
    return specs, skipped
