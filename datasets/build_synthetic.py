"""Build a labelled multilingual synthetic speech set (Festival + espeak-ng).

    python -m datasets.build_synthetic --out /work/data/synth      # from the repository root

See datasets/README.md for what the set holds and how it is made reproducible.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from .synth.builder import PARTS, build, espeak_languages
from .synth.voices import FESTIVAL_BY_NAME, FESTIVAL_VOICES

FESTIVAL_TOTAL = 300  # the default --festival-per-voice spreads about this many clips over the voices


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m datasets.build_synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (manifest.csv goes there)")
    parser.add_argument(
        "--festival-per-voice", type=int, default=round(FESTIVAL_TOTAL / len(FESTIVAL_VOICES)),
        help=f"clips per Festival voice (default: about {FESTIVAL_TOTAL} clips in all)",
    )  # fmt: skip
    parser.add_argument(
        "--festival-voices", type=_csv, default=[v.name for v in FESTIVAL_VOICES],
        help=f"comma-separated Festival voices (default: all {len(FESTIVAL_VOICES)})",
    )  # fmt: skip
    parser.add_argument(
        "--espeak-langs", type=_csv, default=None,
        help="comma-separated ISO codes (default: every espeak-ng language with gettext catalogs)",
    )  # fmt: skip
    parser.add_argument("--espeak-per-lang", type=int, default=3, help="espeak-ng clips per language")
    parser.add_argument("--long", type=int, default=3, help="number of long files")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="length of each long file (at most 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes")
    parser.add_argument("--only", choices=PARTS, help="build only this part; the manifest keeps the others")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.festival_voices) - set(FESTIVAL_BY_NAME))
    if unknown:
        parser.error(f"unknown Festival voices: {', '.join(unknown)}")
    if not 0 < args.long_minutes <= 30:
        parser.error("--long-minutes must be in (0, 30]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    started = time.monotonic()
    result = build(
        out=args.out,
        festival={name: args.festival_per_voice for name in args.festival_voices},
        espeak_langs=args.espeak_langs if args.espeak_langs is not None else espeak_languages(),
        espeak_per_lang=args.espeak_per_lang,
        long_files=args.long,
        long_minutes=args.long_minutes,
        seed=args.seed,
        jobs=args.jobs,
        parts=[args.only] if args.only else PARTS,
    )
    counts = Counter((row["engine"], row["kind"]) for row in result.rows)
    languages = Counter((row["engine"], row["language"]) for row in result.rows if row["kind"] == "clip")
    print(f"built {len(result.rows)} files in {time.monotonic() - started:.0f} s into {args.out}")
    for (engine, kind), n in sorted(counts.items()):
        langs = sorted(lang for (e, lang) in languages if e == engine)
        detail = f" in {len(langs)} languages" if kind == "clip" else ""
        print(f"  {engine} {kind}: {n}{detail}")
    reasons = Counter(reason for _, reason in result.failures)
    for reason, n in sorted(reasons.items()):
        print(f"  not built ({n}): {reason}")
    return 0 if result.rows or not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
