"""Rebuild the committed sample set lid_dask/samples/ with the synthetic-set builder.

    python -m datasets.make_samples      # from the repository root

About 20 clean clips of 4-8 s, mostly Festival voices (several per language for
en/it/cs/fi/ru/ca/hi), four espeak-ng clips, every common format at least once, under 1 MB.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .synth.builder import build, read_manifest
from .synth.plan import SAMPLES

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "lid_dask" / "samples"
MAX_BYTES = 1_000_000
FESTIVAL = {
    "kal_diphone": 1,
    "ked_diphone": 1,
    "cmu_us_slt_arctic_hts": 1,
    "lp_diphone": 1,
    "pc_diphone": 1,
    "msu_ru_nsh_clunits": 2,
    "czech_dita": 1,
    "czech_machac": 1,
    "suo_fi_lj_diphone": 1,
    "hy_fi_mv_diphone": 1,
    "upc_ca_ona_hts": 2,
    "hindi_NSK_diphone": 2,
    "marathi_NSK_diphone": 1,
    "telugu_NSK_diphone": 1,
}
ESPEAK = ["de", "es", "fr", "pl"]  # languages Festival has no voice for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.make_samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    result = build(
        out=args.out,
        festival=FESTIVAL,
        espeak_langs=ESPEAK,
        espeak_per_lang=1,
        long_files=0,
        long_minutes=0,
        jobs=args.jobs,
        parts=("festival", "espeak"),
        profile=SAMPLES,
    )
    rows = read_manifest(args.out / "manifest.csv")
    size = sum(int(row["bytes"]) for row in rows)
    print(f"{len(rows)} clips, {size} bytes of audio in {args.out}")
    for key, reason in result.failures:
        print(f"  failed {key}: {reason}")
    if size > MAX_BYTES:
        print(f"the sample set is over {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    return 0 if not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
