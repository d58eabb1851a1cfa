"""Audio processing with sox and ffmpeg, with the flags that make output repeatable.

sox runs with -R (repeatable: fixed seed for its random generators) and -D (no dither);
ffmpeg with bit-exact flags and no metadata, so two builds write the same bytes
wherever the codec libraries are deterministic (all the ones used here are, single-threaded).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class Format:
    """An output format: audio codec in a container, with the qualities to draw from."""

    codec: str  # audio codec, as the manifest names it
    container: str  # as the manifest names it
    ext: str
    encoder: tuple[str, ...]  # ffmpeg audio encoder arguments
    qualities: tuple[str, ...] = ("",)  # "64k" -> -b:a 64k, "q3" -> -q:a 3, "" -> defaults
    sample_rates: tuple[int, ...] | None = None  # the encoder's accepted rates; None: any
    video: str = ""  # video codec of a black picture track, for video containers


_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
FORMATS = {
    "wav": Format("pcm_s16le", "wav", "wav", ("-c:a", "pcm_s16le")),
    "flac": Format("flac", "flac", "flac", ("-c:a", "flac", "-sample_fmt", "s16")),
    "mp3": Format("mp3", "mp3", "mp3", ("-c:a", "libmp3lame"), ("32k", "48k", "64k", "96k", "128k")),
    "ogg": Format("vorbis", "ogg", "ogg", ("-c:a", "libvorbis"), ("q1", "q3", "q5")),
    "opus": Format("opus", "ogg", "opus", ("-c:a", "libopus"), ("16k", "24k", "32k", "48k"), _OPUS_RATES),
    "m4a": Format("aac", "m4a", "m4a", ("-c:a", "aac"), ("48k", "64k", "96k")),
    "webm": Format("opus", "webm", "webm", ("-c:a", "libopus"), ("24k", "32k"), _OPUS_RATES),
    "mp4": Format("aac", "mp4", "mp4", ("-c:a", "aac"), ("48k", "64k"), video="h264"),
    "mkv": Format("vorbis", "mkv", "mkv", ("-c:a", "libvorbis"), ("q3",), video="h264"),
}

SOX = ("sox", "-R", "-D", "-V1")
FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1")
BITEXACT = ("-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact")


def sox_effects(src: Path, dst: Path, sample_rate: int, tempo: float = 1.0, semitones: float = 0.0) -> None:
    """Mono 16-bit copy of `src` at `sample_rate`, optionally faster/slower and higher/lower.

    `tempo` changes speed without pitch (sox tempo -s, tuned for speech), `semitones`
    pitch without speed; the engine-native controls are used where they exist (espeak-ng).
    """
    effects: list[str] = []
    if tempo != 1.0:
        effects += ["tempo", "-s", f"{tempo:.3f}"]
    if semitones:
        effects += ["pitch", f"{semitones * 100:.0f}"]
    effects += ["rate", "-v", str(sample_rate)]
    subprocess.run([*SOX, str(src), "-b", "16", "-c", "1", str(dst), *effects], check=True, capture_output=True)


def concatenate(parts: list[Path], dst: Path, seconds: float) -> None:
    """`parts` (same rate, mono, 16-bit) one after the other into `dst`, cut at `seconds`.

    sox streams the files: a 30-minute result never sits in Python's memory.
    """
    subprocess.run(
        [*SOX, *map(str, parts), str(dst), "trim", "0", f"{seconds:.3f}"], check=True, capture_output=True
    )


def silence(dst: Path, seconds: float, sample_rate: int) -> None:
    """`seconds` of digital silence."""
    subprocess.run(
        [*SOX, "-n", "-r", str(sample_rate), "-b", "16", "-c", "1", str(dst), "trim", "0", f"{seconds:.3f}"],
        check=True,
        capture_output=True,
    )


def active_rms(samples: np.ndarray, sample_rate: int) -> float:
    """RMS over the 20 ms frames within 40 dB of the loudest: the level of the speech
    itself, not diluted by the pauses, so that an SNR means the same for every clip."""
    frame = max(1, sample_rate // 50)
    usable = len(samples) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    power = np.mean(samples[:usable].reshape(-1, frame) ** 2, axis=1)
    active = power[power >= power.max() * 1e-4]
    return float(np.sqrt(active.mean()))


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: "white", "pink" (1/f, like a room or a fan) or "brown" (rumble)."""
    white = rng.standard_normal(n)
    if kind != "white":
        spectrum = np.fft.rfft(white)
        freqs = np.arange(len(spectrum), dtype=float)
        freqs[0] = 1.0
        spectrum /= np.sqrt(freqs) if kind == "pink" else freqs
        white = np.fft.irfft(spectrum, n)
    return white / np.sqrt(np.mean(white**2))


def add_noise(wav: Path, kind: str, snr_db: float, seed: int) -> None:
    """Mix noise into `wav` in place at `snr_db` below the speech's active level."""
    samples, sample_rate = sf.read(wav, dtype="float64")
    level = active_rms(samples, sample_rate) / 10 ** (snr_db / 20)
    mixed = samples + level * noise(kind, len(samples), np.random.default_rng(seed))
    peak = np.abs(mixed).max()
    if peak > 0.99:
        mixed *= 0.99 / peak
    sf.write(wav, mixed, sample_rate, subtype="PCM_16")


def speech_check(wav: Path) -> tuple[float, float]:
    """(duration in s, RMS) of a synthesised file, to catch voices that speak nothing."""
    samples, sample_rate = sf.read(wav, dtype="float64")
    return len(samples) / sample_rate, float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def encode(src: Path, dst: Path, fmt: Format, quality: str, channels: int) -> None:
    """Encode the wav `src` into `dst` in `fmt`; video formats get a still black picture."""
    inputs: list[str] = ["-i", str(src)]
    video: list[str] = []
    if fmt.video:
        seconds = sf.info(src).duration
        inputs += ["-f", "lavfi", "-i", f"color=c=black:s=160x90:r=5:d={seconds:.3f}"]
        video = ["-map", "1:v", "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
                 "-pix_fmt", "yuv420p", "-flags:v", "+bitexact"]  # fmt: skip
    rate: list[str] = []
    if quality.startswith("q"):
        rate = ["-q:a", quality[1:]]
    elif quality:
        rate = ["-b:a", quality]
    subprocess.run(
        [*FFMPEG, *inputs, "-map", "0:a", *video, *fmt.encoder, *rate, "-ac", str(channels), *BITEXACT, str(dst)],
        check=True,
        capture_output=True,
    )


def probe(path: Path) -> tuple[float, int]:
    """(duration in s, sample rate) of a media file as ffprobe reads it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "format=duration:stream=sample_rate",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    info = json.loads(out)
    return float(info["format"]["duration"]), int(info["streams"][0]["sample_rate"])
