"""Evaluate models on the synthetic benchmark set and commit the result to benchmarks/evaluations/.

    python -m benchmarks.record_evaluation --manifest /work/data/synth/manifest.csv --name 2026-11-27-engine

Writes <name>/summary.json (headline figures per part: Festival and espeak-ng, dev and holdout,
reported separately), evaluation.json (the full xarray Dataset) and report/ (plots) under
benchmarks/evaluations/ (or --into), then prints the comparison with the previous entry. The
entries are the trend, in the repository: each is kept, as the baseline of the next one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

from benchmarks.common import HERE, code_label
from lid_dask.cluster import connect
from lid_dask.evaluation import (
    compare, evaluate, evaluation_frame, from_json, load_table, per_language_table, summary_table, to_json,
    top_confusions, write_report,
)
from lid_dask.runs import Run

EVALUATIONS = HERE / "evaluations"

HEADLINE = ["n", "accuracy", "macro_accuracy", "macro_f1", "ece", "confidently_wrong", "coverage", "review_share",
            "review_error_capture"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.record_evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--name", required=True, help="the entry's folder name, e.g. DATE-what-changed")
    parser.add_argument("-m", "--model", action="append", dest="models", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--into", type=Path, default=EVALUATIONS, help="folder of entries (default: %(default)s)")
    args = parser.parse_args()
    models = args.models or ["whisper-ct2:bundled"]
    labels = load_table(args.manifest, keep=["engine", "split", "kind"])
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create("history", list(labels.frame["uri"]), db=f"sqlite:///{tmp}/ledger.db", models=models,
                         calibrated=False)
        client = connect(n_workers=args.workers, dashboard_address=None)
        try:
            run.execute(client, progress=True)
        finally:
            client.close()
            client.cluster.close()
        results, predictions = run.results(), run.predictions()
    frame = evaluation_frame(results, labels, predictions).compute()
    parts = {"all": frame}
    tags = labels.frame.set_index("uri")
    for column in ("engine", "split", "kind"):
        for value in sorted(tags[column].dropna().unique()):
            uris = set(tags.index[tags[column] == value])
            parts[f"{column}={value}"] = frame[frame["uri"].isin(uris)]
    festival_holdout = set(tags.index[(tags["engine"] == "festival") & (tags["split"] == "holdout")])
    parts["festival holdout"] = frame[frame["uri"].isin(festival_holdout)]
    manifest_sha256 = hashlib.sha256(Path(args.manifest).read_bytes()).hexdigest()
    summary = {"models": models, "manifest": args.manifest, "manifest_sha256": manifest_sha256, "commit": code_label(),
               "parts": {}}
    out = args.into / args.name
    out.mkdir(parents=True, exist_ok=True)
    for part, rows in parts.items():
        ds = evaluate(rows)
        table = summary_table(ds)
        summary["parts"][part] = {model: {k: _round(table.loc[model, k]) for k in HEADLINE if k in table}
                                  for model in table.index}
        if part == "all":
            (out / "evaluation.json").write_text(to_json(ds))
            languages = per_language_table(ds, "consensus")
            summary["worst_languages"] = languages[languages["support"] >= 3].nsmallest(8, "recall")[
                ["support", "recall", "precision"]].round(3).reset_index().to_dict("records")
            summary["top_confusions"] = top_confusions(ds, "consensus", 8).round(3).to_dict("records")
            previous = _previous(args.into, args.name)
            write_report(ds, out / "report", previous=compare(ds, previous) if previous is not None else None,
                         title=f"lid-dask on the synthetic benchmark set ({args.name})")
            if previous is not None:
                print(compare(ds, previous).summary())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["parts"], indent=1))


def _previous(folder: Path, name: str):
    entries = sorted(p for p in folder.iterdir() if p.is_dir() and p.name < name and (p / "evaluation.json").exists())
    return from_json((entries[-1] / "evaluation.json").read_text()) if entries else None


def _round(value):
    value = float(value)
    return None if value != value else round(value, 4)


if __name__ == "__main__":
    main()
