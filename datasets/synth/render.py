"""Carry out a `ClipSpec`: synthesise, vary, encode, measure; one manifest row back.

Runs in worker processes. A clip whose voice fails or says nothing raises `ClipFailed`;
the builder logs and skips it rather than aborting the build.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from . import audio
from .plan import ESPEAK_DEFAULT_WPM, ClipSpec
from .sentences import estimated_seconds
from .voices import FESTIVAL_BY_NAME, espeak_synth, festival_synth

MIN_RMS = 0.003  # below this a "speech" file is silence


class ClipFailed(Exception):
    """A clip that could not be made; the message says why."""


def synthesise(engine: str, voice: str, text: str, speed: float, pitch: float, wav: Path) -> None:
    """Engine-native speech for `text` in `wav`; a crash or silence raises ClipFailed."""
    try:
        if engine == "festival":
            festival_synth(FESTIVAL_BY_NAME[voice], text, wav)
        else:
            name, _, variant = voice.partition("+")
            espeak_synth(name, variant, round(speed * ESPEAK_DEFAULT_WPM), int(pitch), text, wav)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = (getattr(error, "stderr", b"") or b"").decode(errors="replace").strip()
        raise ClipFailed(f"{engine} {voice}: {stderr[-300:] or error}") from error
    try:
        seconds, rms = audio.speech_check(wav)
    except (OSError, RuntimeError) as error:  # not a wav file: the voice died
        raise ClipFailed(f"{engine} {voice}: unreadable output") from error
    # Truncated output (a voice that stops at a character it cannot read) is far shorter
    # than the estimate; real speech is rarely below half of it.
    expected = estimated_seconds(text) * (FESTIVAL_BY_NAME[voice].pace if engine == "festival" else 1 / speed)
    if seconds < 0.35 * expected or rms < MIN_RMS:
        raise ClipFailed(f"{engine} {voice}: {seconds:.1f} s at RMS {rms:.4f} for about {expected:.1f} s of text")


def file_facts(path: Path) -> dict:
    """Measured duration, size and checksum of a finished file."""
    duration, _ = audio.probe(path)
    data = path.read_bytes()
    return {"duration_s": round(duration, 3), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def render_clip(spec: ClipSpec, out_dir: Path) -> dict:
    """Make the file of `spec` under `out_dir`; its manifest row."""
    fmt = audio.FORMATS[spec.format]
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        raw, processed = Path(tmp, "raw.wav"), Path(tmp, "processed.wav")
        synthesise(spec.engine, spec.voice, spec.text, spec.speed, spec.pitch, raw)
        if spec.engine == "festival":
            audio.sox_effects(raw, processed, spec.sample_rate, tempo=spec.speed, semitones=spec.pitch)
        else:  # speed and pitch were espeak-ng's own
            audio.sox_effects(raw, processed, spec.sample_rate)
        if spec.noise:
            audio.add_noise(processed, spec.noise, spec.snr_db, spec.seed)
        target = out_dir / spec.uri
        target.parent.mkdir(parents=True, exist_ok=True)
        audio.encode(processed, target, fmt, spec.quality, spec.channels)
    return {
        "uri": spec.uri,
        "language": spec.language,
        "engine": spec.engine,
        "voice": spec.voice,
        "text": spec.text,
        "codec": fmt.codec,
        "container": fmt.container,
        "video": fmt.video,
        "quality": spec.quality,
        "sample_rate": spec.sample_rate,
        "channels": spec.channels,
        "speed": spec.speed,
        "pitch": spec.pitch,
        "noise": spec.noise,
        "snr_db": "" if spec.snr_db is None else spec.snr_db,
        "kind": "clip",
        "prefix": "",
        "prefix_s": "",
        **file_facts(target),
    }
