"""Which languages does a short Whisper context answer too often? No labels needed.

    python -m studies.short_context_answers --manifest /work/data/synth/manifest.csv --split dev
    python -m studies.short_context_answers s3://bucket/sample-of-my-archive/ --limit 500

Whisper was trained on 30 s inputs. lid-dask runs it on a 10 s context (three times cheaper on
CPU), which leaves most answers unchanged but pulls some towards a few languages. This script
runs every speech window of the given audio at both contexts and, over the windows where the two
answers differ, counts for each language how often the short context moved *to* it and *away*
from it. A one-sided sign test flags the languages the short context over-answers; each gets the
ratio of its mean probability at 30 s to that at the short context as its factor. That is what
the `whisper-ct2` option ``recheck`` takes (its default, ``la:0.37``, was made this way on the dev
split). Run it on a few hundred files of your own archive to check the default there.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track
from rich.table import Table
from scipy.stats import binomtest

from lid_dask.audio import load_windows
from lid_dask.errors import AudioError
from lid_dask.models import load_model
from lid_dask.sources import expand_sources
from lid_dask.speech import speech_seconds
from lid_dask.windows import WindowPlan

# Seconds of speech a window needs to be counted: stricter than the engine's voting threshold
# (ConsensusConfig.min_window_speech, 0.5 s), so that the bias is estimated on real speech.
MIN_SPEECH = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m studies.short_context_answers", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", help="files, folders, globs, URLs or manifests")
    parser.add_argument("--manifest", type=Path, help="a datasets.build_synthetic manifest (uri column relative to it)")
    parser.add_argument("--split", help="only the manifest rows of this split (e.g. dev)")
    parser.add_argument("--short", type=float, default=10.0, help="the short context in seconds (default 10)")
    parser.add_argument("--model", default="whisper-ct2:bundled", help="a whisper-ct2 model spec")
    parser.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    parser.add_argument("--limit", type=int, help="at most this many files")
    args = parser.parse_args(argv)
    if not args.sources and not args.manifest:
        parser.error("give sources or --manifest")
    return args


def files(args: argparse.Namespace) -> list[str]:
    uris = list(expand_sources(args.sources)) if args.sources else []
    if args.manifest:
        manifest = pd.read_csv(args.manifest)
        if args.split:
            manifest = manifest[manifest["split"] == args.split]
        uris += [str(args.manifest.parent / uri) for uri in manifest["uri"]]
    return uris[:args.limit]


def context_moves(uris: list[str], model: str, short: float) -> tuple[Counter, Counter, dict[str, float], int]:
    """(windows moved to each language at the short context, moved away from it, each language's
    mean probability at 30 s over that at the short context, windows seen)."""
    joiner = "&" if "?" in model else "?"
    short_model = load_model(f"{model}{joiner}context={short:g}&recheck=")
    full_model = load_model(f"{model}{joiner}context=30&recheck=")
    plan = WindowPlan(length=short)
    to, away, seen = Counter(), Counter(), 0
    short_mass = full_mass = 0.0
    for uri in track(uris, description="both contexts"):
        try:
            audio = load_windows(uri, plan)
        except AudioError:
            continue
        voting = [s for s in audio.samples if speech_seconds(s) >= MIN_SPEECH]
        if not voting:
            continue
        seen += len(voting)
        short_rows, full_rows = short_model.predict(voting), full_model.predict(voting)
        short_mass, full_mass = short_mass + short_rows.sum(0), full_mass + full_rows.sum(0)
        for a, b in zip(short_rows.argmax(1), full_rows.argmax(1)):
            if a != b:
                to[short_model.labels[a]] += 1
                away[short_model.labels[b]] += 1
    ratio = dict(zip(short_model.labels, full_mass / np.maximum(short_mass, 1e-12))) if seen else {}
    return to, away, ratio, seen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    to, away, ratio, seen = context_moves(files(args), args.model, args.short)
    rows = sorted((binomtest(to[code], to[code] + away[code], 0.5, alternative="greater").pvalue, code)
                  for code in set(to) | set(away))
    table = Table(title=f"{seen} speech windows; {sum(to.values())} answered differently at {args.short:g} s and 30 s")
    for column in ("language", f"moved to it at {args.short:g} s", "moved away", "p (sign test)",
                   "mean p at 30 s / short"):
        table.add_column(column, justify="right")
    for p, code in rows[:15]:
        table.add_row(code, str(to[code]), str(away[code]), f"{p:.2g}", f"{ratio[code]:.2f}")
    console = Console()
    console.print(table)
    flagged = [code for p, code in rows if p < args.alpha]
    console.print(f"recheck={','.join(f'{code}:{ratio[code]:.2f}' for code in flagged)}" if flagged
                  else f"no language reaches p < {args.alpha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
