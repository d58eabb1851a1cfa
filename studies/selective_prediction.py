"""Does the accept rule keep its promise on files it never saw, and what does it cost in coverage?

    python -m studies.selective_prediction --manifest /work/data/synth/manifest.csv \
        --db sqlite:////work/data/selective/ledger.db --out studies/results/selective_prediction.json

The bundled model runs over the dev and the holdout split of the synthetic set (two runs in the
ledger, resumed if they are there, made without calibrations: the models' own confidence). The
accept rule is fitted on dev (`fit_accept_rule`, Learn then Test) at each target precision, and
its precision and coverage are measured on holdout, against the default rule (no review reason,
confidence at least 0.5). Then the same with fewer labelled files: random subsets of dev of each
size, each fitted and measured on the whole holdout split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from lid_dask.cluster import connect
from lid_dask.consensus import ConsensusConfig
from lid_dask.evaluation import load_table
from lid_dask.evaluation.acceptance import labelled_answers, performance_of
from lid_dask.evaluation.labels import LabelSet
from lid_dask.evaluation.selective import AcceptRule, fit_accept_rule
from lid_dask.runs import Run

TARGETS = (0.9, 0.95, 0.97)
SIZES = (100, 300)  # and all of dev
DEFAULT = AcceptRule(ConsensusConfig().low_confidence, 0.0, 0.0, 0, 0, 0, None)  # the fixed rule, as a threshold


def answers(manifest: Path, db: str, model: str, workers: int) -> dict[str, pd.DataFrame]:
    """Per split, each labelled file's answer (`labelled_answers`), from a run over the split."""
    labels = load_table(str(manifest), keep=["split"])
    out, client = {}, None
    try:
        for split in ("dev", "holdout"):
            part = labels.frame[labels.frame["split"] == split]
            run = Run.create(f"synth-{split}", list(part["uri"]), db, models=[model], calibrated=False)
            if run.status().remaining:
                client = client or connect(n_workers=workers, dashboard_address=None)
                run.execute(client, progress=True)
            out[split] = labelled_answers(run, LabelSet(part))
    finally:
        if client is not None:
            client.close()
            client.cluster.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.selective_prediction", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="a datasets.build_synthetic manifest")
    parser.add_argument("--db", required=True, help="the ledger of the two runs (made if missing)")
    parser.add_argument("--model", default="whisper-ct2:bundled")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--confidence-level", type=float, default=0.95)
    parser.add_argument("--subsets", type=int, default=20, help="random dev subsets of each size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    files = answers(args.manifest, args.db, args.model, args.workers)
    dev, holdout = files["dev"], files["holdout"]
    level = args.confidence_level
    rows = [{"rule": "default", "target": None, "labelled": 0, "threshold": DEFAULT.threshold,
             **performance_of(DEFAULT, holdout, level)}]
    for target in TARGETS:
        rule = fit_accept_rule(dev["confidence"], dev["correct"], target, level, dev["eligible"])
        rows.append({"rule": "fitted on all dev", "target": target, "labelled": len(dev), "threshold": rule.threshold,
                     **performance_of(rule, holdout, level)})
    rng = np.random.default_rng(args.seed)
    draws = []
    for size in (*SIZES, len(dev)):
        for draw in range(args.subsets if size < len(dev) else 1):
            sample = dev.iloc[rng.choice(len(dev), size, replace=False)]
            for target in TARGETS:
                rule = fit_accept_rule(sample["confidence"], sample["correct"], target, level, sample["eligible"])
                draws.append({"size": size, "draw": draw, "target": target, "threshold": rule.threshold,
                              **performance_of(rule, holdout, level)})
    draws = pd.DataFrame(draws)
    console = Console(width=140)
    console.print(f"dev: {len(dev)} labelled files ({int(dev['eligible'].sum())} eligible, accuracy "
                  f"{dev['correct'].mean():.1%}); holdout: {len(holdout)} ({int(holdout['eligible'].sum())} eligible, "
                  f"accuracy {holdout['correct'].mean():.1%}); confidence level {level:g}")
    table = Table(title="fitted on dev, measured on holdout")
    for column in ("rule", "target", "threshold", "holdout precision (95% CI)", "coverage", "review queue",
                   "errors caught"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for row in rows:
        table.add_row(row["rule"], f"{row['target']:g}" if row["target"] else "-",
                      "nothing" if row["threshold"] is None else f"{row['threshold']:g}",
                      f"{row['precision']:.1%} ({row['precision_low']:.1%}-{row['precision_high']:.1%})"
                      if row["accepted"] else "-", f"{row['coverage']:.1%} ({row['accepted']})",
                      str(row["review_queue"]), f"{row['errors_caught']:.1%}")
    console.print(table)
    sizes = Table(title=f"by labelled-set size: {args.subsets} random dev subsets each, measured on holdout")
    for column in ("labelled", "target", "nothing promised", "threshold (median, range)", "precision (mean, min)",
                   "below target", "coverage (mean, range)"):
        sizes.add_column(column, justify="right")
    for (size, target), group in draws.groupby(["size", "target"]):
        fitted = group[group["threshold"].notna()]
        precision = fitted["precision"].dropna()
        sizes.add_row(str(size), f"{target:g}", f"{(group['threshold'].isna()).sum()} of {len(group)}",
                      f"{fitted['threshold'].median():g} ({fitted['threshold'].min():g}-{fitted['threshold'].max():g})"
                      if len(fitted) else "-",
                      f"{precision.mean():.1%} ({precision.min():.1%})" if len(precision) else "-",
                      f"{(precision < target).sum()} of {len(precision)}",
                      f"{group['coverage'].mean():.1%} ({group['coverage'].min():.1%}-{group['coverage'].max():.1%})")
    console.print(sizes)
    if args.out:
        records = {name: json.loads(pd.DataFrame(table).to_json(orient="records"))  # NaN as null
                   for name, table in (("rules", rows), ("by_size", draws))}
        args.out.write_text(json.dumps({"confidence_level": level, "dev_files": len(dev), "holdout_files": len(holdout),
                                        **records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
