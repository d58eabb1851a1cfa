"""Cheaper contexts at the same accuracy? The first pass's context and the recheck's, on labelled clips.

    python -m studies.context_cost --manifest /work/data/synth/manifest.csv --split dev
    python -m studies.context_cost --manifest /work/data/synth/manifest.csv --split holdout \
        --factors-from studies/results/context_cost_dev.json

The encoder is most of lid-dask's time on CPU, and its cost grows faster than the frames it
encodes. Every speech window of every clip is run once at each context in `CONTEXTS` (a window
longer than the context is padded to its next whole second, as `whisper-ct2` does), with each
encode timed. Then each rule (first-pass context c, Latin scaled by the label-free factor for c,
windows still answering Latin run again at context r) is replayed from those probabilities:
accuracy against the labels, and model seconds per file from the measured encode times. The
factor for c is found as the default's was (`studies.short_context_answers`): Latin's mean
probability at 30 s over that at c, without labels; `--factors-from` reuses the dev split's
factors on another split, so that nothing is fitted on it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track
from rich.table import Table

from lid_dask.audio import SAMPLE_RATE, load_windows
from lid_dask.languages import base_language, to_code
from lid_dask.models import load_model
from lid_dask.speech import speech_seconds
from lid_dask.windows import WindowPlan

CONTEXTS = (6, 8, 9, 10, 12, 15, 20, 30)
RECHECKS = (20, 30)
MIN_SPEECH = 0.5  # a window votes from this much speech (ConsensusConfig.min_window_speech)


def measure(uris: list[str], model: str) -> tuple[list[list[dict]], list[str], dict[int, float]]:
    """Per file, its speech windows with their probabilities at every context; the model's labels;
    the median seconds of one encode at each padded length."""
    backend = load_model(f"{model}{'&' if '?' in model else '?'}recheck=", "cpu")
    plan, timings, files = WindowPlan.parse("auto"), {}, []
    for uri in track(uris, description="every context"):
        windows = []
        for samples in load_windows(uri, plan).samples:
            speech = speech_seconds(samples)
            if speech < MIN_SPEECH:
                continue
            by_length = {}
            for context in CONTEXTS:
                length = padded(context, len(samples) / SAMPLE_RATE)
                if length not in by_length:
                    started = time.perf_counter()
                    by_length[length] = backend._detect([samples], [length])[0].tolist()
                    timings.setdefault(length, []).append(time.perf_counter() - started)
            windows.append({"speech": speech, "seconds": len(samples) / SAMPLE_RATE, "probabilities": by_length})
        files.append(windows)
    return files, backend.labels, {length: float(np.median(t)) for length, t in timings.items()}


def padded(context: float, seconds: float) -> int:
    return int(min(30, max(context, math.ceil(seconds))))


def latin_factors(files: list[list[dict]], labels: list[str]) -> dict[int, float]:
    """Latin's mean probability at 30 s over that at each context: no labels."""
    la = labels.index("la")
    windows = [w for f in files for w in f]
    full = np.mean([w["probabilities"][padded(30, w["seconds"])][la] for w in windows])
    return {c: float(full / np.mean([w["probabilities"][padded(c, w["seconds"])][la] for w in windows]))
            for c in CONTEXTS}


def replay(files, labels, truth, engines, timings, context, factor, recheck) -> dict:
    """Accuracy and model seconds per file of one rule, from the measured probabilities."""
    la, bases = labels.index("la"), [base_language(label) for label in labels]
    right, seconds, rechecked, windows = [], 0.0, 0, 0
    for file_windows, label in zip(files, truth):
        vote = np.zeros(len(labels))
        for w in file_windows:
            windows += 1
            first = padded(context, w["seconds"])
            p = np.array(w["probabilities"][first])
            seconds += timings[first]
            if recheck and first < 30:
                p = p * np.where(np.arange(len(labels)) == la, factor, 1.0)
                p /= p.sum()
                if p.argmax() == la:
                    again = padded(recheck, w["seconds"])
                    p = np.array(w["probabilities"][again])
                    seconds += timings[again]
                    rechecked += 1
            vote += w["speech"] * p
        right.append(bool(file_windows) and bases[int(vote.argmax())] == base_language(to_code(label)))
    right = np.array(right)
    return {"accuracy": float(right.mean()), "festival": float(right[engines == "festival"].mean()),
            "model_ms_per_file": 1000 * seconds / len(files), "rechecked": rechecked / max(windows, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.context_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="a datasets.build_synthetic manifest")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default="whisper-ct2:bundled")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--factors-from", type=Path, help="a result of this study whose Latin factors to use")
    parser.add_argument("--out", type=Path, help="write the rules' figures here (JSON)")
    args = parser.parse_args(argv)
    manifest = pd.read_csv(args.manifest)
    clips = manifest[(manifest["kind"] == "clip") & (manifest["split"] == args.split)].head(args.limit)
    files, labels, timings = measure([str(args.manifest.parent / uri) for uri in clips["uri"]], args.model)
    factors = ({int(c): f for c, f in json.loads(args.factors_from.read_text())["factors"].items()}
               if args.factors_from else latin_factors(files, labels))
    rules = [{"context": c, "factor": factors[c], "recheck": r,
              **replay(files, labels, list(clips["language"]), clips["engine"].to_numpy(), timings, c, factors[c], r)}
             for c in CONTEXTS if c < 30 for r in RECHECKS]
    rules += [{"context": c, "factor": 1.0, "recheck": None,
               **replay(files, labels, list(clips["language"]), clips["engine"].to_numpy(), timings, c, 1.0, None)}
              for c in (10, 30)]
    table = Table(title=f"{args.split}: {len(files)} clips; one encode: "
                  + ", ".join(f"{length} s {1000 * t:.0f} ms" for length, t in sorted(timings.items())))
    for column in ("first context", "Latin factor", "recheck at", "accuracy", "festival", "model ms/file",
                   "windows rechecked"):
        table.add_column(column, justify="right")
    for rule in rules:
        table.add_row(f"{rule['context']} s", f"{rule['factor']:.2f}", f"{rule['recheck']} s" if rule["recheck"] else "-",
                      f"{rule['accuracy']:.1%}", f"{rule['festival']:.1%}", f"{rule['model_ms_per_file']:.0f}",
                      f"{rule['rechecked']:.0%}")
    Console(width=120).print(table)
    if args.out:
        args.out.write_text(json.dumps({"split": args.split, "files": len(files), "timings": timings,
                                        "factors": factors, "rules": rules}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
