"""Accuracy and throughput of lid-dask against the plain faster-whisper loop a user would write.

    python -m benchmarks.bench_accuracy_throughput --manifest /work/data/synth/manifest.csv \
        [--limit N] [--split dev|holdout|all] [--engine festival|espeak-ng] [--methods a,b,...]

Over the manifest's clips (kind=clip), each method runs over the same files, after a warm-up on
two files that is not counted (models are loaded before timing; every file is read once first so
that the page cache favours no method). The methods run interleaved, block by block (--block
files), so that load from a neighbour process falls on all of them alike; each method's wall time
and CPU time (all threads of the process, a figure that contention barely moves) are summed.
Methods:

- ``lid-dask``: ``lid_dask.Identifier()`` defaults (bundled Whisper base CT2 int8, 10 s context,
  Silero VAD, auto windows) through ``iter_results`` (decode + VAD + inference, end to end);
- ``lid-dask-vad-none``: the same without VAD; ``lid-dask-ctx30``: one 30 s window padded to a
  30 s context (what faster-whisper looks at); ``lid-dask-ctx15``/``-ctx20``: 15/20 s windows and
  context (no recheck); ``lid-dask-fp32``: float32 weights; ``lid-dask-no-recheck``: the 10 s
  context's Latin answers taken as they are (``recheck=``) (optional);
- ``fw-default``: ``WhisperModel(<bundled folder>, device="cpu")`` (compute_type "default": the
  model's float16 becomes float32 on CPU), then per file ``decode_audio`` + ``detect_language``;
- ``fw-int8``: the loop a speed-aware user writes: ``compute_type="int8"`` and ``cpu_threads`` set to
  the machine's cores.

Start-up (importing the package in a fresh Python, then loading the model) is timed apart from
the files and reported separately; the ratios are
given for the files alone and with each method's start-up added.

A stage breakdown (decode, VAD, mel features, model) of the lid-dask default path runs last,
single-threaded, to show where the time goes. Labels and predictions are compared as base
languages through ``lid_dask.languages`` (Whisper's ``jw`` -> ``jv``).

Prints the figures; writes results/accuracy_throughput{.json,.md,_predictions.csv}.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    RESULTS, Timer, base_code, check_quiet_machine, load_manifest, machine_info, machine_line, md_table, pct,
    stratified_limit, warm_page_cache, whisper_languages, write_results,
)

WARMUP_FILES = 2

# name -> how to run it. "lid" entries are Identifier keyword arguments.
METHODS: dict[str, dict] = {
    "lid-dask": {"kind": "lid", "options": {}},
    "lid-dask-vad-none": {"kind": "lid", "options": {"vad": "none"}},
    "lid-dask-ctx30": {"kind": "lid", "options": {"models": "whisper-ct2:bundled?context=30", "windows": "first:1x30"}},
    "lid-dask-ctx15": {"kind": "lid", "options": {"models": "whisper-ct2:bundled?context=15&recheck=", "windows": "auto:3x15"}},
    "lid-dask-ctx20": {"kind": "lid", "options": {"models": "whisper-ct2:bundled?context=20&recheck=", "windows": "auto:3x20"}},
    "lid-dask-no-recheck": {"kind": "lid", "options": {"models": "whisper-ct2:bundled?recheck="}},
    "lid-dask-fp32": {"kind": "lid", "options": {"models": "whisper-ct2:bundled?compute_type=float32"}},
    "lid-dask-energy": {"kind": "lid", "options": {"vad": "energy"}},
    "fw-default": {"kind": "fw", "compute_type": "default"},
    "fw-int8": {"kind": "fw", "compute_type": "int8", "cpu_threads": os.cpu_count() or 0},
}
DEFAULT_METHODS = ["lid-dask", "lid-dask-vad-none", "lid-dask-ctx30", "fw-default", "fw-int8"]
BASELINES = ("fw-default", "fw-int8")


# -- methods ------------------------------------------------------------------------------------
# Each method loads its model and warms up once, then runs over blocks of files. Blocks of all
# methods are interleaved (A B C A B C ...) so that a neighbour's load, if any, falls on every
# method alike; wall time and CPU time (all threads of this process) are summed per method.

def import_seconds(module: str) -> float:
    """How long a fresh Python takes to import `module`: the start-up a user's script pays before
    loading the model (this process has imported it already)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


class LidMethod:
    def __init__(self, options: dict):
        self.options = options

    def prepare(self, warmup: list[str]) -> dict:
        import lid_dask

        with Timer() as load:
            self.identifier = lid_dask.Identifier(**self.options)
        list(self.identifier.iter_results(warmup))
        return {"load_s": import_seconds("lid_dask") + load.seconds, "fingerprint": self.identifier.fingerprint()}

    def run(self, paths: list[str], stats: dict) -> list[dict]:
        return [{"pred": r.language, "prob": r.confidence, "error": r.error_kind,
                 "review": ",".join(r.review_reasons), "windows": window_record(r)}
                for r in self.identifier.iter_results(paths)]


def window_record(result) -> str:
    """The first model's windows as ``language:probability:speech`` joined by ``;`` (for the CSV)."""
    if not result.models:
        return ""
    return ";".join(f"{w.language}:{w.probability:.4f}:{w.speech_seconds:.2f}" for w in result.models[0].windows)


class FasterWhisperMethod:
    def __init__(self, compute_type: str, cpu_threads: int = 0):
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads  # 0: CTranslate2's default

    def prepare(self, warmup: list[str]) -> dict:
        from faster_whisper import WhisperModel, decode_audio

        from lid_dask.models.bundled import bundled_model_dir

        self.decode_audio = decode_audio
        with Timer() as load:
            self.model = WhisperModel(str(bundled_model_dir()), device="cpu", compute_type=self.compute_type,
                                      cpu_threads=self.cpu_threads)
        for p in warmup:
            self.model.detect_language(decode_audio(p))
        return {"load_s": import_seconds("faster_whisper") + load.seconds, "compute_type": self.model.model.compute_type}

    def run(self, paths: list[str], stats: dict) -> list[dict]:
        rows = []
        for p in paths:
            try:
                t0 = time.perf_counter()
                audio = self.decode_audio(p)
                t1 = time.perf_counter()
                language, probability, _ = self.model.detect_language(audio)
                t2 = time.perf_counter()
                stats["decode_s"] = stats.get("decode_s", 0.0) + t1 - t0
                stats["detect_s"] = stats.get("detect_s", 0.0) + t2 - t1
                rows.append({"pred": language, "prob": probability, "error": None, "review": "", "windows": ""})
            except Exception as exc:  # noqa: BLE001 - the user's loop would crash; we record it
                rows.append({"pred": None, "prob": 0.0, "error": f"{type(exc).__name__}: {exc}", "review": "",
                             "windows": ""})
        return rows


def make_method(name: str):
    spec = METHODS[name]
    if spec["kind"] == "lid":
        return LidMethod(spec["options"])
    return FasterWhisperMethod(spec["compute_type"], spec.get("cpu_threads", 0))


def run_interleaved(names: list[str], paths: list[str], block: int) -> tuple[dict, dict]:
    methods = {}
    stats: dict[str, dict] = {}
    for name in names:
        print(f"   loading {name} ...", flush=True)
        methods[name] = make_method(name)
        stats[name] = {**methods[name].prepare(paths[:WARMUP_FILES]), "elapsed_s": 0.0, "cpu_s": 0.0}
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for b, start in enumerate(range(0, len(paths), block)):
        chunk = paths[start:start + block]
        order = names if b % 2 == 0 else names[::-1]  # alternate who goes first
        for name in order:
            w0, c0 = time.perf_counter(), time.process_time()
            rows[name].extend(methods[name].run(chunk, stats[name]))
            stats[name]["elapsed_s"] += time.perf_counter() - w0
            stats[name]["cpu_s"] += time.process_time() - c0
        done = min(start + block, len(paths))
        print(f"   {done}/{len(paths)} files: " + "  ".join(f"{n} {stats[n]['elapsed_s']:.0f}s" for n in names),
              flush=True)
    return rows, stats


def stage_breakdown(paths: list[str]) -> dict:
    """Sequential, single-threaded: where the lid-dask default path spends its time."""
    from lid_dask.audio import load_windows
    from lid_dask.consensus import ConsensusConfig
    from lid_dask.models import load_model
    from lid_dask.models.base import pad_to
    from lid_dask.speech import speech_seconds
    from lid_dask.windows import WindowPlan

    import ctranslate2

    backend = load_model("whisper-ct2:bundled", "cpu")
    plan = WindowPlan()
    min_speech = ConsensusConfig().min_window_speech
    decoded, windows = [], []
    with Timer() as t_decode:
        for p in paths:
            try:
                decoded.append(load_windows(p, plan))
            except Exception:  # noqa: BLE001
                pass
    with Timer() as t_vad:
        for audio in decoded:
            for samples in audio.samples:
                if speech_seconds(samples, "silero") >= min_speech:
                    windows.append(samples)
    groups: dict[float, list[np.ndarray]] = defaultdict(list)
    for w in windows:
        groups[backend.padded_seconds(w)].append(w)
    mels_by_group = {}
    with Timer() as t_features:
        for seconds, members in groups.items():
            samples = int(seconds * 16000)
            frames = samples // backend.features.hop_length
            mels_by_group[seconds] = [backend.features(pad_to(w, samples), padding=0)[:, :frames] for w in members]
    with Timer() as t_model:
        for seconds, mels in mels_by_group.items():
            for start in range(0, len(mels), backend.max_batch):
                batch = np.ascontiguousarray(np.stack(mels[start:start + backend.max_batch]))
                backend.model.detect_language(ctranslate2.StorageView.from_array(batch))
    decoded_audio_s = sum(a.decoded_seconds for a in decoded)
    return {
        "files": len(paths), "decoded_files": len(decoded), "windows": sum(len(a.samples) for a in decoded),
        "speech_windows": len(windows), "decoded_audio_s": decoded_audio_s,
        "decode_s": t_decode.seconds, "vad_s": t_vad.seconds, "features_s": t_features.seconds,
        "model_s": t_model.seconds,
        "contexts": {str(k): len(v) for k, v in groups.items()},
    }


# -- scoring ------------------------------------------------------------------------------------

def score(df: pd.DataFrame, method: str) -> dict:
    ok = df[f"{method}.ok"]

    def acc(mask) -> dict:
        n = int(mask.sum())
        return {"n": n, "accuracy": float(ok[mask].mean()) if n else None}

    everything = pd.Series(True, index=df.index)
    out = {
        "overall": acc(everything),
        "whisper_languages_only": acc(df["in_whisper"]),
        "no_answer": int(df[f"{method}.pred_base"].isna().sum()),
        "by_engine": {e: acc(df["engine"] == e) for e in sorted(df["engine"].unique())},
        "by_split": {s: acc(df["split"] == s) for s in sorted(df["split"].unique())},
        "by_engine_split": {f"{e}/{s}": acc((df["engine"] == e) & (df["split"] == s))
                            for e in sorted(df["engine"].unique()) for s in sorted(df["split"].unique())
                            if ((df["engine"] == e) & (df["split"] == s)).any()},
        "by_codec": {c: acc(df["codec"] == c) for c in sorted(df["codec"].unique())},
    }
    return out


EARLY_STOP_GRID = (0.8, 0.85, 0.9, 0.95, 0.98, 0.99)  # above 0.75, where two agreeing windows fix the language
EARLY_STOP_MISS_BUDGET = 0.01  # the rule fixed before the study: at most 1 stop in 100 hides a disagreeing window


def early_stop_study(df: pd.DataFrame, method: str, engine: str = "festival") -> dict:
    """Would settling a long file after two agreeing windows hide a third window that disagrees?

    Long files are speech of one voice, so three speech windows of the same voice and language,
    taken from different clips, stand in for a long file's three windows (clips differ more than
    the windows of one file do, so this errs towards disagreement). As in the engine, the two
    windows with the most speech run first and settle the file when both name the same language
    with probability >= T; the third then is not run. Per T: how often the file settles, how
    often the skipped window would have raised ``windows_disagree`` (a confident other language),
    and how many settled answers are wrong (and of those, how many the skipped window would have
    flagged: the review a stop can cost). The chosen T is the smallest on the grid whose miss rate
    is within the budget.
    """
    from lid_dask.consensus import ConsensusConfig

    config = ConsensusConfig()
    triples = []
    for (label, _), group in df[df["engine"] == engine].groupby(["label_base", "voice"]):
        windows = [(language, float(p), float(speech))
                   for record in group[f"{method}.windows"] if record
                   for language, p, speech in (w.split(":") for w in record.split(";"))
                   if language != "None" and float(speech) >= config.min_window_speech]
        for trio in itertools.combinations(windows, 3):
            triples.append((label, *sorted(trio, key=lambda w: -w[2])))
    rows = []
    for threshold in EARLY_STOP_GRID:
        settled = [(label, a, c) for label, a, b, c in triples if a[0] == b[0] and min(a[1], b[1]) >= threshold]
        missed = [(label, a) for label, a, c in settled if c[0] != a[0] and c[1] >= config.window_disagreement]
        rows.append({"threshold": threshold, "triples": len(triples), "settled": len(settled),
                     "settled_rate": len(settled) / len(triples) if triples else None,
                     "missed_flags": len(missed), "miss_rate": len(missed) / len(settled) if settled else 0.0,
                     "settled_wrong": sum(base_code(a[0]) != label for label, a, _ in settled),
                     "missed_on_wrong": sum(base_code(a[0]) != label for label, a in missed)})
    chosen = next((r["threshold"] for r in rows if r["settled"] and r["miss_rate"] <= EARLY_STOP_MISS_BUDGET), None)
    return {"engine": engine, "method": method, "budget": EARLY_STOP_MISS_BUDGET, "rows": rows, "chosen": chosen}


def per_language(df: pd.DataFrame, methods: list[str]) -> list[dict]:
    rows = []
    for (engine, label), g in df.groupby(["engine", "label_base"], sort=True):
        row = {"engine": engine, "language": label, "n": len(g), "in_whisper": bool(g["in_whisper"].iloc[0])}
        for m in methods:
            row[m] = float(g[f"{m}.ok"].mean())
            top = g[f"{m}.pred_base"].fillna("none").value_counts()
            row[f"{m}.top_pred"] = f"{top.index[0]}({top.iloc[0]})"
        rows.append(row)
    return rows


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_accuracy_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--limit", type=int, default=None, help="at most N clips, spread over engines and languages")
    parser.add_argument("--split", choices=["dev", "holdout", "all"], default="all")
    parser.add_argument("--engine", default=None, help="only this engine (festival, espeak-ng)")
    parser.add_argument("--languages", default=None, help="only these comma-separated labels (e.g. hi,mr,te)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage breakdown")
    parser.add_argument("--early-stop-study", action="store_true",
                        help="per lid-dask method: would settling long files after two agreeing windows hide a "
                             "disagreeing window? (choose the threshold on --split dev only)")
    parser.add_argument("--block", type=int, default=8, help="files per interleaved block")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix for the result file names")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")

    df = load_manifest(args.manifest, kind="clip", split=args.split, engine=args.engine)
    if args.languages:
        df = df[df["language"].isin(args.languages.split(","))].reset_index(drop=True)
    df = stratified_limit(df, args.limit, args.seed)
    if len(df) < WARMUP_FILES:
        raise SystemExit("no clips selected")
    paths = df["path"].tolist()
    info = machine_info()
    print(f"machine: {machine_line(info)}")
    print(f"clips: {len(df)} ({df['engine'].value_counts().to_dict()}, {df['split'].value_counts().to_dict()}), "
          f"{df['language'].nunique()} languages, {df['duration_s'].sum():.0f} s of audio")
    check_quiet_machine()
    warm_page_cache(paths)
    whisper_langs = whisper_languages()
    df["label_base"] = [base_code(x) for x in df["language"]]
    df["in_whisper"] = df["label_base"].isin(whisper_langs)
    audio_s = float(df["duration_s"].sum())

    print(f"\n== running {', '.join(methods)} interleaved in blocks of {args.block} files", flush=True)
    all_rows, stats = run_interleaved(methods, paths, args.block)
    summary: dict[str, dict] = {}
    for m in methods:
        rows = all_rows[m]
        df[f"{m}.pred"] = [r["pred"] for r in rows]
        df[f"{m}.prob"] = [round(float(r["prob"] or 0), 4) for r in rows]
        df[f"{m}.error"] = [r["error"] for r in rows]
        df[f"{m}.review"] = [r["review"] for r in rows]
        df[f"{m}.windows"] = [r["windows"] for r in rows]
        df[f"{m}.pred_base"] = [base_code(r["pred"]) for r in rows]
        df[f"{m}.ok"] = df[f"{m}.pred_base"] == df["label_base"]
        elapsed = stats[m]["elapsed_s"]
        summary[m] = {**stats[m], "files_per_s": len(paths) / elapsed, "audio_s_per_s": audio_s / elapsed,
                      "cpu_s_per_file": stats[m]["cpu_s"] / len(paths), **score(df, m)}
        s = summary[m]
        print(f"== {m}: {elapsed:.1f} s  {s['files_per_s']:.2f} files/s  {s['audio_s_per_s']:.1f} audio-s/s  "
              f"{s['cpu_s_per_file']:.2f} CPU-s/file  accuracy {pct(s['overall']['accuracy'])}  "
              + "  ".join(f"{e} {pct(v['accuracy'])} (n={v['n']})" for e, v in s["by_engine"].items())
              + f"  no answer {s['no_answer']}", flush=True)

    stages = None
    if not args.no_stages:
        print("\n== stage breakdown of the lid-dask default path (sequential) ...", flush=True)
        stages = stage_breakdown(paths)
        total = stages["decode_s"] + stages["vad_s"] + stages["features_s"] + stages["model_s"]
        stages["total_s"] = total
        print("   " + "  ".join(f"{k[:-2]} {stages[k]:.2f} s ({100 * stages[k] / total:.0f}%)"
                                 for k in ("decode_s", "vad_s", "features_s", "model_s"))
              + f"  total {total:.2f} s  windows {stages['windows']} (speech {stages['speech_windows']})")

    ratios = {}
    lid_methods = [m for m in methods if METHODS[m]["kind"] == "lid"]
    for lm in lid_methods:
        for b in (b for b in BASELINES if b in summary):
            ratios[f"{lm} vs {b}"] = {
                "speed_ratio": summary[lm]["files_per_s"] / summary[b]["files_per_s"],
                "speed_ratio_with_startup": ((summary[b]["elapsed_s"] + summary[b]["load_s"])
                                             / (summary[lm]["elapsed_s"] + summary[lm]["load_s"])),
                "cpu_ratio": summary[b]["cpu_s_per_file"] / summary[lm]["cpu_s_per_file"],
                "accuracy_diff_points": 100 * (summary[lm]["overall"]["accuracy"] - summary[b]["overall"]["accuracy"]),
                # the discordant pairs (McNemar): files only one of the two gets right
                "only_lid_right": int((df[f"{lm}.ok"] & ~df[f"{b}.ok"]).sum()),
                "only_baseline_right": int((~df[f"{lm}.ok"] & df[f"{b}.ok"]).sum()),
                **{f"accuracy_diff_points.{e}": 100 * (v["accuracy"] - summary[b]["by_engine"][e]["accuracy"])
                   for e, v in summary[lm]["by_engine"].items() if v["accuracy"] is not None},
            }
    print("\n== ratios")
    for k, v in ratios.items():
        print(f"   {k}: speed x{v['speed_ratio']:.2f} (with start-up x{v['speed_ratio_with_startup']:.2f}; CPU time "
              f"x{v['cpu_ratio']:.2f}), accuracy {v['accuracy_diff_points']:+.1f} points "
              f"(only lid right {v['only_lid_right']}, only baseline right {v['only_baseline_right']})  "
              + "  ".join(f"{kk.split('.', 1)[1]} {vv:+.1f}" for kk, vv in v.items() if kk.startswith("accuracy_diff_points.")))

    studies = []
    if args.early_stop_study:
        for lm in lid_methods:
            study = early_stop_study(df, lm)
            studies.append(study)
            print(f"\n== early-stop study, {lm}, {study['engine']} (chosen threshold: {study['chosen']}; "
                  f"budget {study['budget']:.0%} of stops)")
            for r in study["rows"]:
                print(f"   T={r['threshold']:.2f}: {r['settled']}/{r['triples']} triples settle after two windows "
                      f"({pct(r['settled_rate'])}), {r['missed_flags']} of them skip a disagreeing window "
                      f"({pct(r['miss_rate'])}); settled answers wrong: {r['settled_wrong']}, of which the "
                      f"skipped window would have flagged {r['missed_on_wrong']}")

    langs = per_language(df, methods)
    print("\n== per language (accuracy; festival first)")
    for row in sorted(langs, key=lambda r: (r["engine"] != "festival", r["engine"], r["language"])):
        print(f"   {row['engine']:<10} {row['language']:<6} n={row['n']:<3} "
              + " ".join(f"{m}={pct(row[m])}:{row[m + '.top_pred']}" for m in methods)
              + ("" if row["in_whisper"] else "  (not a Whisper language)"))

    tag = f"_{args.tag}" if args.tag else ""
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"accuracy_throughput{tag}_predictions.csv"
    keep = ["uri", "language", "label_base", "in_whisper", "engine", "voice", "codec", "split", "duration_s"]
    keep += [c for c in df.columns if any(c.startswith(m + ".") for m in methods) and not c.endswith(".pred_base")]
    df[keep].to_csv(csv_path, index=False)

    payload = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "files": len(df),
               "audio_s": audio_s, "methods": summary, "ratios": ratios, "stages": stages, "per_language": langs,
               "early_stop_studies": studies}
    md = render_markdown(payload, methods, df)
    json_path, md_path = write_results(f"accuracy_throughput{tag}", payload, md, args.out)
    print(f"\nwrote {json_path}, {md_path}, {csv_path}")
    return 0


def render_markdown(p: dict, methods: list[str], df: pd.DataFrame) -> str:
    s = p["methods"]
    lines = ["# Accuracy and throughput: lid-dask vs the faster-whisper loop\n",
             f"Machine: {machine_line(p['machine'])}\n",
             f"Clips: {p['files']} ({p['audio_s']:.0f} s of audio); args: `{p['args']}`\n",
             "## Speed and accuracy\n"]
    engines = sorted(df["engine"].unique())
    splits = sorted(df["split"].unique())
    rows = []
    for m in methods:
        row = {"method": m, "start-up s": s[m]["load_s"], "files/s": s[m]["files_per_s"],
               "audio-s/s": s[m]["audio_s_per_s"], "CPU-s/file": s[m]["cpu_s_per_file"],
               "accuracy": pct(s[m]["overall"]["accuracy"]),
               "Whisper langs only": pct(s[m]["whisper_languages_only"]["accuracy"])}
        for e in engines:
            row[e] = pct(s[m]["by_engine"][e]["accuracy"])
        for key, v in s[m]["by_engine_split"].items():
            row[key] = pct(v["accuracy"])
        row["no answer"] = s[m]["no_answer"]
        rows.append(row)
    lines.append(md_table(rows))
    lines.append("Files per engine/split: " + ", ".join(
        f"{e}/{sp} {int(((df['engine'] == e) & (df['split'] == sp)).sum())}" for e in engines for sp in splits) + "\n")
    if p["ratios"]:
        lines.append("## Ratios (lid-dask variant / baseline)\n")
        lines.append(md_table([{"pair": k, "speed": f"x{v['speed_ratio']:.2f}",
                                "with start-up": f"x{v['speed_ratio_with_startup']:.2f}",
                                "CPU time": f"x{v['cpu_ratio']:.2f}",
                                "accuracy (points)": f"{v['accuracy_diff_points']:+.1f}",
                                "only lid right": v["only_lid_right"], "only baseline right": v["only_baseline_right"],
                                **{kk.split('.', 1)[1]: f"{vv:+.1f}" for kk, vv in v.items()
                                   if kk.startswith('accuracy_diff_points.')}}
                               for k, v in p["ratios"].items()]))
    if p["stages"]:
        st = p["stages"]
        lines.append("## Where the time goes (lid-dask default path, sequential, one thread of Python)\n")
        lines.append(md_table([{k: f"{st[k]:.2f} s ({100 * st[k] / st['total_s']:.0f}%)"
                                for k in ("decode_s", "vad_s", "features_s", "model_s")}
                               | {"total": f"{st['total_s']:.2f} s", "windows": st["windows"],
                                  "speech windows": st["speech_windows"]}]))
    fw = [m for m in methods if METHODS[m]["kind"] == "fw"]
    if fw:
        lines.append("Baseline loop split: " + "; ".join(
            f"{m}: decode_audio {s[m]['decode_s']:.1f} s, detect_language {s[m]['detect_s']:.1f} s "
            f"(compute type {s[m]['compute_type']})" for m in fw) + "\n")
    for study in p["early_stop_studies"]:
        lines.append(f"## Early-stop study ({study['method']}, {study['engine']} voices; chosen threshold "
                     f"{study['chosen']}, budget {study['budget']:.0%} of stops)\n")
        lines.append(md_table([{**r, "settled_rate": pct(r["settled_rate"]), "miss_rate": pct(r["miss_rate"])}
                               for r in study["rows"]]))
    lines.append("## Per language\n")
    cols = ["engine", "language", "n", "in_whisper"] + methods + [f"{m}.top_pred" for m in methods]
    lines.append(md_table(sorted(p["per_language"], key=lambda r: (r["engine"] != "festival", r["engine"], r["language"])),
                          cols, floatfmt="{:.2f}"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
