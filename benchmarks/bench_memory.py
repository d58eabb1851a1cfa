"""Peak memory (RSS) of a fresh process per configuration, so that peaks do not mix.

    python -m benchmarks.bench_memory --manifest /work/data/synth/manifest.csv [--n 20]

Configurations (each in its own subprocess; peak = the process's high-water RSS, VmHWM, which is
what ``getrusage(RUSAGE_SELF).ru_maxrss`` reports minus what Linux carries over from the parent
across fork/exec; also read after import and after loading the model):

- ``numpy``: a process that only imports numpy (the floor);
- ``lid-dask``: ``import lid_dask``, ``Identifier()`` (bundled Whisper base, int8, Silero VAD),
  ``iter_results`` over N clips;
- ``fw-default`` / ``fw-int8``: the plain faster-whisper loop (``WhisperModel(<bundled>,
  device="cpu"[, compute_type="int8"])``, ``decode_audio`` + ``detect_language`` per file);
- with long files in the manifest (kind=long): ``lid-dask-long`` (``identify_batch`` per file),
  ``pyav-fw-long`` (``decode_audio`` of the whole file + ``detect_language``) and
  ``librosa-fw-long`` (``librosa.load(path, sr=16000)`` + ``detect_language``).

Prints the figures; writes results/memory{.json,.md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the child runs as `python -m benchmarks.bench_memory` from here

CLIP_CONFIGS = ["numpy", "lid-dask", "fw-default", "fw-int8"]
LONG_CONFIGS = ["lid-dask-long", "pyav-fw-long", "librosa-fw-long"]


# -- child --------------------------------------------------------------------------------------

def _mib_peak() -> float:
    """Peak RSS of this process image: VmHWM. (ru_maxrss would do too, except that Linux carries it
    over fork and exec, so a child started by a 150 MiB parent reports at least 150 MiB.)"""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _mib_now() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(config: str, files: list[str]) -> dict:
    marks = []

    def mark(stage):
        marks.append({"stage": stage, "rss_mib": round(_mib_now(), 1), "peak_mib": round(_mib_peak(), 1)})

    started = time.perf_counter()
    import numpy  # noqa: F401

    if config == "numpy":
        mark("import numpy")
    elif config.startswith("lid-dask"):
        import lid_dask

        mark("import lid_dask")
        identifier = lid_dask.Identifier()
        mark("Identifier() loaded")
        if config == "lid-dask":
            answers = [r.language for r in identifier.iter_results(files)]
        else:
            answers = [identifier.identify_batch([f])[0].language for f in files]
        mark(f"{len(files)} files identified")
    else:
        from faster_whisper import WhisperModel, decode_audio

        from lid_dask.models.bundled import bundled_model_dir

        mark("import faster_whisper")
        compute_type = "int8" if config == "fw-int8" else "default"
        model = WhisperModel(str(bundled_model_dir()), device="cpu", compute_type=compute_type)
        mark(f"WhisperModel({compute_type}) loaded")
        answers = []
        for f in files:
            if config == "librosa-fw-long":
                import librosa

                audio, _ = librosa.load(f, sr=16000)
            else:
                audio = decode_audio(f)
            answers.append(model.detect_language(audio)[0])
            del audio
        mark(f"{len(files)} files identified")
    return {"config": config, "files": len(files), "peak_mib": round(_mib_peak(), 1), "marks": marks,
            "seconds": round(time.perf_counter() - started, 2)}


# -- parent -------------------------------------------------------------------------------------

def run_child(config: str, files: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(files, handle)
        list_path = handle.name
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child", config, "--files", list_path],
                              capture_output=True, text=True, timeout=1800, cwd=ROOT)
    finally:
        os.unlink(list_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"config": config, "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest")
    parser.add_argument("--n", type=int, default=20, help="clips per configuration")
    parser.add_argument("--configs", default=None, help="comma-separated subset")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        files = json.loads(Path(args.files).read_text()) if args.files else []
        print(json.dumps(child(args.child, files)))
        return 0
    if not args.manifest:
        parser.error("--manifest is required")

    # Imported here, not at the top: a child process measures its own memory, without pandas.
    from benchmarks.common import (
        RESULTS, load_manifest, machine_info, machine_line, md_table, stratified_limit, write_results,
    )

    clips = stratified_limit(load_manifest(args.manifest, kind="clip"), args.n)["path"].tolist()
    longs = load_manifest(args.manifest, kind="long")["path"].tolist()
    configs = CLIP_CONFIGS + (LONG_CONFIGS if longs else [])
    if args.configs:
        configs = [c for c in args.configs.split(",") if c]
    info = machine_info()
    print(f"machine: {machine_line(info)}")
    print(f"{len(clips)} clips, {len(longs)} long files")
    results = []
    for config in configs:
        files = [] if config == "numpy" else (longs if config.endswith("-long") else clips)
        r = run_child(config, files)
        results.append(r)
        if "error" in r:
            print(f"   {config:<16} FAILED: {r['error'][-300:]}")
        else:
            print(f"   {config:<16} peak {r['peak_mib']:7.1f} MiB  ({r['files']} files, {r['seconds']} s)  "
                  + "; ".join(f"{m['stage']}: rss {m['rss_mib']:.0f} / peak {m['peak_mib']:.0f}" for m in r["marks"]),
                  flush=True)
    by = {r["config"]: r for r in results if "error" not in r}
    ratios = {}
    floor = by.get("numpy", {}).get("peak_mib")
    for name in by:
        if floor and name != "numpy":
            ratios[f"{name} over numpy (MiB)"] = round(by[name]["peak_mib"] - floor, 1)
    for a, b in (("lid-dask", "fw-default"), ("lid-dask", "fw-int8"), ("lid-dask-long", "librosa-fw-long"),
                 ("lid-dask-long", "pyav-fw-long")):
        if a in by and b in by:
            ratios[f"{b} / {a} peak"] = round(by[b]["peak_mib"] / by[a]["peak_mib"], 2)
    for k, v in ratios.items():
        print(f"   {k}: {v}")
    payload = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "clips": len(clips), "long_files": len(longs), "results": results, "ratios": ratios}
    md = (f"# Peak memory per process\n\nMachine: {machine_line(info)}\n\n"
          f"{len(clips)} clips; {len(longs)} long files; one fresh process per configuration.\n\n"
          + md_table([{"config": r["config"], "files": r.get("files"), "peak MiB": r.get("peak_mib"),
                       "after load (rss MiB)": (r["marks"][1]["rss_mib"] if len(r.get("marks", [])) > 2 else None),
                       "seconds": r.get("seconds"), "error": (r.get("error") or "")[-80:] or None} for r in results])
          + "\n" + "\n".join(f"- {k}: {v}" for k, v in ratios.items()) + "\n")
    json_path, md_path = write_results(f"memory{'_' + args.tag if args.tag else ''}", payload, md, args.out or RESULTS)
    print(f"wrote {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
