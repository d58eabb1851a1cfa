"""End to end on a local Dask cluster against the plain faster-whisper loop, on the same files.

    python -m benchmarks.bench_cluster_e2e --manifest /work/data/synth/manifest.csv
        [--limit 100] [--workers 1,2] [--batch-files 8,32] [--no-wait]

Files: the manifest's clips (kind == clip; columns uri (relative to the manifest's folder),
language, engine, kind, split), at most `--limit`, picked deterministically: engines in proportion
to their clips, round-robin over languages within each engine, so that a small sample covers every
language it can. Without that manifest the committed samples (lid_dask/samples/manifest.csv) are
used, and without those ~40 clips are spoken with espeak-ng into a temp folder.

Methods, each over the same files, after the page cache holds them all:

- ``faster-whisper loop``: ``WhisperModel(<bundled model folder>, device="cpu")`` (its default
  compute type and threads), then per file ``decode_audio`` + ``detect_language``: the loop a user
  would write in one process. Model loading and two warm-up files are not timed.
- ``lid-dask in-process``: ``lid_dask.Identifier()`` (the default models) through
  ``iter_results`` in the benchmark's own process: what the cluster adds on top of the engine, and
  a check that the cluster gives every file the same answer (no result reaches the wrong file).
- ``lid-dask N worker(s), batch B``: ``Run.create(..., db=<temp SQLite>, batch_files=B)`` with the
  default models, then ``run.execute(client, progress=False)`` on ``lid_dask.cluster.connect(
  n_workers=N, threads_per_worker=1)`` (which gives each worker its share of the cores and drops
  Dask's ``MALLOC_TRIM_THRESHOLD_``): registration, claims, batch tasks on worker processes,
  results as events, ledger writes; files/s is files / wall time of ``execute``. The workers load the
  model at start (the ``LID_DASK_MODELS`` preload) and a warm-up run over 2N files is not timed.

Accuracy: label and prediction both through ``lid_dask.languages.to_code`` and compared as base
languages (``pt-BR`` = ``pt``); files whose label Whisper cannot answer at all are counted but
reported apart. Results per engine (Festival vs espeak-ng) are reported separately: the brief
warns that espeak-ng speech is hard for Whisper base.

Prints a table and writes benchmarks/results/cluster_e2e.json (+ _predictions.csv).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import (
    RESULTS, base_code, code_label, command_line, load_manifest, stratified_limit, wait_for_quiet_machine, whisper_languages,
)

DEFAULT_MANIFEST = "/work/data/synth/manifest.csv"

ESPEAK_SENTENCES = {  # fallback only: short everyday sentences, five per language
    "en": ["The weather is nice today and we are going to the park.",
           "Could you tell me where the railway station is, please?",
           "My brother works in a hospital in the middle of the city.",
           "We bought fresh bread and cheese at the market this morning.",
           "The meeting has been moved to Thursday afternoon."],
    "de": ["Das Wetter ist heute schön und wir gehen in den Park.",
           "Können Sie mir bitte sagen, wo der Bahnhof ist?",
           "Mein Bruder arbeitet in einem Krankenhaus in der Stadtmitte.",
           "Wir haben heute Morgen frisches Brot und Käse auf dem Markt gekauft.",
           "Die Besprechung wurde auf Donnerstagnachmittag verschoben."],
    "fr": ["Il fait beau aujourd'hui et nous allons au parc.",
           "Pourriez-vous me dire où se trouve la gare, s'il vous plaît ?",
           "Mon frère travaille dans un hôpital au centre de la ville.",
           "Nous avons acheté du pain frais et du fromage au marché ce matin.",
           "La réunion a été déplacée à jeudi après-midi."],
    "es": ["Hoy hace buen tiempo y vamos al parque.",
           "¿Podría decirme dónde está la estación de tren, por favor?",
           "Mi hermano trabaja en un hospital en el centro de la ciudad.",
           "Esta mañana compramos pan fresco y queso en el mercado.",
           "La reunión se ha trasladado al jueves por la tarde."],
    "it": ["Oggi fa bel tempo e andiamo al parco.",
           "Potrebbe dirmi dove si trova la stazione, per favore?",
           "Mio fratello lavora in un ospedale nel centro della città.",
           "Stamattina abbiamo comprato pane fresco e formaggio al mercato.",
           "La riunione è stata spostata a giovedì pomeriggio."],
    "pt": ["Hoje o tempo está bom e vamos ao parque.",
           "Pode dizer-me onde fica a estação de comboios, por favor?",
           "O meu irmão trabalha num hospital no centro da cidade.",
           "Esta manhã comprámos pão fresco e queijo no mercado.",
           "A reunião foi adiada para quinta-feira à tarde."],
    "nl": ["Het weer is vandaag mooi en we gaan naar het park.",
           "Kunt u mij vertellen waar het station is, alstublieft?",
           "Mijn broer werkt in een ziekenhuis in het centrum van de stad.",
           "We hebben vanochtend vers brood en kaas op de markt gekocht.",
           "De vergadering is verplaatst naar donderdagmiddag."],
    "pl": ["Dzisiaj jest ładna pogoda i idziemy do parku.",
           "Czy może mi pan powiedzieć, gdzie jest dworzec kolejowy?",
           "Mój brat pracuje w szpitalu w centrum miasta.",
           "Dziś rano kupiliśmy na targu świeży chleb i ser.",
           "Spotkanie zostało przeniesione na czwartek po południu."],
}


# -- files --------------------------------------------------------------------------------------

def espeak_clips(folder: Path) -> Path:
    """~40 wav clips spoken by espeak-ng, with a manifest; deterministic (fixed voice settings)."""
    rows = []
    for lang, sentences in ESPEAK_SENTENCES.items():
        for i, text in enumerate(sentences):
            name = f"espeak-{lang}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", lang, "-s", "150", "-w", str(folder / name), text], check=True,
                           capture_output=True)
            rows.append({"uri": name, "language": lang, "engine": "espeak-ng", "kind": "clip", "split": "all"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def find_manifest(requested: str | None) -> tuple[Path, str]:
    if requested and Path(requested).exists():
        return Path(requested), "requested"
    import lid_dask

    samples = Path(lid_dask.__file__).resolve().parent / "samples" / "manifest.csv"
    if samples.exists():
        print(f"NOTE: {requested} not found; using the committed samples {samples}", file=sys.stderr)
        return samples, "samples"
    folder = Path(tempfile.mkdtemp(prefix="lid-e2e-espeak-"))
    print(f"NOTE: neither {requested} nor {samples} exists; speaking ~40 clips with espeak-ng into {folder}",
          file=sys.stderr)
    return espeak_clips(folder), "espeak-fallback"


def pick(manifest: Path, limit: int, split: str, seed: int = 0) -> pd.DataFrame:
    """The manifest's clips that exist, each engine's share spread round-robin over its languages
    (`common.stratified_limit`), in manifest order."""
    df = load_manifest(manifest, kind="clip", split=split)
    df = df[[Path(p).exists() for p in df["path"]]].sort_values(["engine", "language", "uri"])
    return stratified_limit(df, limit, seed).sort_index().reset_index(drop=True)


# -- methods ------------------------------------------------------------------------------------

def faster_whisper_loop(paths: list[str]) -> tuple[list[str | None], float]:
    from faster_whisper import WhisperModel, decode_audio

    from lid_dask.models.bundled import bundled_model_dir

    model = WhisperModel(str(bundled_model_dir()), device="cpu")
    for path in paths[:2]:  # warm-up, not timed
        model.detect_language(decode_audio(path))
    predictions = []
    start = time.perf_counter()
    for path in paths:
        language, _probability, _all = model.detect_language(decode_audio(path))
        predictions.append(language)
    seconds = time.perf_counter() - start
    del model
    return predictions, seconds


def lid_dask_in_process(paths: list[str]) -> tuple[list[str | None], float]:
    """The same default models through `Identifier.iter_results` in this process: what the cluster
    adds on top, and a check that the distributed path gives every file its own answer."""
    from lid_dask import Identifier

    identifier = Identifier()
    list(identifier.iter_results(paths[:2]))  # warm-up, not timed
    start = time.perf_counter()
    predictions = [r.language for r in identifier.iter_results(paths)]
    return predictions, time.perf_counter() - start


def lid_dask_cluster(paths: list[str], workers: int, batches: list[int], folder: Path) -> list[dict]:
    from lid_dask.cluster import connect
    from lid_dask.models import DEFAULT_MODEL
    from lid_dask.runs import Run

    os.environ["LID_DASK_MODELS"] = DEFAULT_MODEL  # the preload loads the model when a worker starts
    out = []
    client = connect(n_workers=workers, threads_per_worker=1, dashboard_address=None)
    try:
        client.wait_for_workers(workers)
        tag = f"{workers}w"
        warm = Run.create(f"warm-{tag}", paths[:2 * workers], db=f"sqlite:///{folder}/warm-{tag}.db", batch_files=1)
        warm.execute(client, progress=False)
        for batch in batches:
            db = f"sqlite:///{folder}/e2e-{tag}-{batch}.db"  # a fresh ledger and run for every measurement
            start = time.perf_counter()
            run = Run.create(f"e2e-{tag}-{batch}", paths, db=db, batch_files=batch)
            registered = time.perf_counter() - start
            start = time.perf_counter()
            progress = run.execute(client, progress=False)
            seconds = time.perf_counter() - start
            if progress.done_this_session != len(paths):
                raise RuntimeError(f"run {run.name} processed {progress.done_this_session} of {len(paths)} files")
            frame = run.results().set_index("uri")
            status = run.status()
            predictions = [frame.loc[p, "language"] if p in frame.index else None for p in paths]
            out.append({"method": f"lid-dask {workers} worker{'s' if workers > 1 else ''}, batch {batch}",
                        "workers": workers, "batch_files": batch, "seconds": seconds, "register_s": registered,
                        "predictions": predictions, "counts": status.counts,
                        "errors": status.top_errors})
            run.ledger.engine.dispose()
    finally:
        client.close()
        if client.cluster is not None:
            client.cluster.close()
        os.environ.pop("LID_DASK_MODELS", None)
    return out


# -- scoring and output -------------------------------------------------------------------------

def score(files: pd.DataFrame, predictions: list, known: set[str]) -> dict:
    labels = [base_code(label) for label in files["language"]]
    predicted = [base_code(p) for p in predictions]
    rows = pd.DataFrame({"engine": files["engine"], "label": labels, "predicted": predicted})
    rows["correct"] = rows["label"] == rows["predicted"]
    answerable = rows[rows["label"].isin(known)]
    out = {"accuracy": float(rows["correct"].mean()) if len(rows) else float("nan"),
           "accuracy_answerable": float(answerable["correct"].mean()) if len(answerable) else float("nan"),
           "answerable": int(len(answerable)), "no_answer": int(rows["predicted"].isna().sum())}
    out["by_engine"] = {e: {"n": int(len(g)), "accuracy": float(g["correct"].mean())} for e, g in rows.groupby("engine")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cluster_e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--split", default="all")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-files", default="8,32",
                        help="batch sizes to run (32 is the RunSettings default; with ~100 files it leaves the "
                             "second worker idle at the end)")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process Identifier run")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster_e2e.json")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)

    manifest, source = find_manifest(args.manifest)
    files = pick(manifest, args.limit, args.split)
    paths = files["path"].tolist()
    if not paths:
        raise SystemExit(f"no clip files found through {manifest}")
    for p in paths:  # page cache: no method pays (or is spared) the first read
        Path(p).read_bytes()
    known = whisper_languages()
    print(f"{len(paths)} clips from {manifest} ({source}); engines {files['engine'].value_counts().to_dict()}; "
          f"{files['language'].nunique()} languages", flush=True)

    methods = []
    if not args.no_wait:
        wait_for_quiet_machine()
    load_start = os.getloadavg()[0]
    predictions, seconds = faster_whisper_loop(paths)
    methods.append({"method": "faster-whisper loop (1 process)", "workers": 0, "seconds": seconds,
                    "predictions": predictions})
    print(f"faster-whisper loop: {len(paths) / seconds:.2f} files/s", flush=True)
    if not args.no_in_process:
        predictions, seconds = lid_dask_in_process(paths)
        methods.append({"method": "lid-dask in-process (Identifier)", "workers": 0, "seconds": seconds,
                        "predictions": predictions})
        print(f"lid-dask in-process: {len(paths) / seconds:.2f} files/s", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="lid-e2e-"))
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            if not args.no_wait:
                wait_for_quiet_machine()
            for m in lid_dask_cluster(paths, workers, [int(b) for b in args.batch_files.split(",")], folder):
                methods.append(m)
                print(f"{m['method']}: {len(paths) / m['seconds']:.2f} files/s, counts {m['counts']}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    baseline = len(paths) / methods[0]["seconds"]
    one_worker = {m.get("batch_files"): len(paths) / m["seconds"]
                  for m in methods if m["workers"] == 1}
    table = []
    for m in methods:
        rate = len(paths) / m["seconds"]
        s = score(files, m["predictions"], known)
        m.update(files_per_s=rate, vs_faster_whisper=rate / baseline, score=s)
        key = m.get("batch_files")
        if m["workers"] > 1 and key in one_worker:
            m["scaling_vs_1_worker"] = rate / one_worker[key]
        table.append(m)
    print(f"\n{len(paths)} clips, {os.cpu_count()} cores, load at start {load_start:.2f}")
    print(f"{'method':<52} {'files/s':>8} {'vs fw':>6} {'scaling':>8} {'accuracy':>9} "
          f"{'answerable':>11} " + " ".join(f"{e:>12}" for e in sorted(files['engine'].unique())))
    for m in table:
        s = m["score"]
        scaling = f"{m['scaling_vs_1_worker']:.2f}x" if "scaling_vs_1_worker" in m else ""
        engines = " ".join(f"{100 * s['by_engine'][e]['accuracy']:>11.1f}%" for e in sorted(s["by_engine"]))
        print(f"{m['method']:<52} {m['files_per_s']:>8.2f} {m['vs_faster_whisper']:>5.2f}x {scaling:>8} "
              f"{100 * s['accuracy']:>8.1f}% {100 * s['accuracy_answerable']:>10.1f}% {engines}")
    agree = {m["method"]: float(pd.Series([base_code(a) == base_code(b) for a, b in zip(m["predictions"], methods[0]["predictions"])]).mean())
             for m in table[1:]}
    print("agreement with the faster-whisper loop: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in agree.items()))
    reference = next((m for m in table if m["method"].startswith("lid-dask in-process")), None)
    same_as_in_process = {}
    if reference:
        for m in table:
            if m["workers"]:
                same_as_in_process[m["method"]] = sum(base_code(a) == base_code(b)
                                                      for a, b in zip(m["predictions"], reference["predictions"]))
        print("cluster answers identical to the in-process Identifier: " +
              ", ".join(f"{k} {v}/{len(paths)}" for k, v in same_as_in_process.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    predictions_frame = files[["uri", "language", "engine"]].copy()
    for m in table:
        predictions_frame[m["method"]] = m["predictions"]
    predictions_frame.to_csv(args.out.with_name(args.out.stem + "_predictions.csv"), index=False)
    payload = {"meta": {"lid_dask_code": code_label(), "manifest": str(manifest), "source": source, "files": len(paths), "cores": os.cpu_count(),
                        "load_at_start": load_start, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "command": command_line()},
               "methods": [{k: v for k, v in m.items() if k != "predictions"} for m in table],
               "agreement_with_faster_whisper": agree, "identical_to_in_process": same_as_in_process}
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
