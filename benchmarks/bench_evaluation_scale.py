"""Evaluation at scale: metrics over millions of generated prediction rows with Dask.

Rows are written to Parquet in chunks (never all in memory), then `evaluate` reads them as a
Dask DataFrame. Prints the time of each step and the peak resident memory of this process,
against the size the rows would take as one pandas frame.

    python -m benchmarks.bench_evaluation_scale --rows 5000000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, code_label, command_line
from lid_dask.evaluation import evaluate
from lid_dask.languages import to_code

WHISPER_LIKE = [to_code(c) for c in "en de fr es it pt ru cs fi hi mr te ca nl pl sv tr ar zh ja ko vi id uk".split()]


def generate(folder: Path, rows: int, chunk: int, seed: int) -> int:
    """Parquet parts of [uri, model, predicted, confidence, label, agreement, needs_review]."""
    rng = np.random.default_rng(seed)
    languages = np.array(WHISPER_LIKE)
    weights = 1 / np.arange(1, len(languages) + 1)  # Zipf-like: a long tail of rare languages
    weights /= weights.sum()
    written = 0
    for part, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        label = rng.choice(languages, n, p=weights)
        correct = rng.random(n) < 0.8
        predicted = np.where(correct, label, rng.choice(languages, n))
        confidence = np.clip(np.where(correct, rng.beta(8, 2, n), rng.beta(4, 3, n)), 0, 1)
        frame = pd.DataFrame({
            "uri": [f"s3://archive/{start + i:09d}.mp3" for i in range(n)],
            "model": "whisper-ct2", "predicted": predicted, "confidence": confidence, "label": label,
            "agreement": np.where(confidence > 0.6, "unanimous", "split"), "needs_review": confidence < 0.5,
        })
        frame.to_parquet(folder / f"part-{part:04d}.parquet", index=False)
        written += n
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_evaluation_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk", type=int, default=250_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "evaluation_scale.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(folder, args.rows, args.chunk, args.seed)
        generated = time.perf_counter() - started
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        frame = dd.read_parquet(str(folder))
        ds = evaluate(frame)
        evaluated = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        one_frame = pd.read_parquet(next(folder.glob("*.parquet"))).memory_usage(deep=True).sum() / 2**20
    figures = {
        "rows": args.rows, "partitions": -(-args.rows // args.chunk),
        "generate_s": round(generated, 1), "evaluate_s": round(evaluated, 1),
        "rows_per_s": round(args.rows / evaluated), "peak_rss_mib": round(peak),
        "rss_before_evaluate_mib": round(rss_before),
        "all_rows_in_pandas_mib_estimate": round(one_frame * args.rows / args.chunk),
        "accuracy": round(float(ds["accuracy"].sel(model="whisper-ct2")), 4),
        "ece": round(float(ds["ece"].sel(model="whisper-ct2")), 4),
        "lid_dask_code": code_label(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command_line(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
