"""Long files (kind=long, ~30 min): partial decoding and end-to-end time against what a user writes.

    python -m benchmarks.bench_long_files --manifest /work/data/synth/manifest.csv [--repeats 3]

(a) decoding: ``lid_dask.audio.load_windows(uri, WindowPlan("spread", count=3, length=10))``
    against a full decode to 16 kHz mono with PyAV (``faster_whisper.decode_audio``); target >= 20x.
(b) end to end, models loaded beforehand (not timed):
    ``lid_dask.Identifier().identify_batch([uri])`` (which may settle a file after two agreeing
    windows; also timed with ``ConsensusConfig(early_stop=None)``, every window) against the loop a user writes,
    ``librosa.load(path, sr=16000)`` of the whole file then ``WhisperModel.detect_language(audio)``
    (``WhisperModel(<bundled folder>, device="cpu")``, default compute type); target >= 5x.
    Also ``decode_audio`` (PyAV) + ``detect_language`` as a stronger baseline.
(c) decoding as in (a) for the first long file transcoded by ffmpeg to other formats (``--formats``),
    so that every format's ratio is measured even when the set holds one long file per format.
Each measurement is repeated (3 times by default; the end-to-end methods interleaved, repeat by
repeat); medians are reported, with each method's language against the label (the long files start
with a prefix: silence, noise, tones or speech in another language, so listening to the start
alone can mislead).

Prints the figures; writes results/long_files{.json,.md}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from benchmarks.common import (
    RESULTS, Timer, base_code, check_quiet_machine, load_manifest, machine_info, machine_line, md_table, median,
    warm_page_cache, write_results,
)


def measure(fn, repeats: int) -> tuple[float, list[float], object]:
    times, value = [], None
    for _ in range(repeats):
        with Timer() as t:
            value = fn()
        times.append(t.seconds)
    return median(times), times, value


def measure_interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, list[float], object]]:
    """Like `measure` for several methods, alternating their order repeat by repeat."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    values: dict[str, object] = {}
    for repeat in range(repeats):
        for name in (list(fns) if repeat % 2 == 0 else list(fns)[::-1]):
            with Timer() as t:
                values[name] = fns[name]()
            times[name].append(t.seconds)
    return {name: (median(times[name]), times[name], values[name]) for name in fns}


# format -> ffmpeg audio arguments for (c)
TRANSCODE = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "opus": ["-c:a", "libopus", "-b:a", "32k"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    "flac": ["-c:a", "flac"],
    "wav": ["-c:a", "pcm_s16le"],
}


def decode_row(path: str, plan, repeats: int) -> dict:
    """Partial (the plan's windows) against full decoding of one file; medians of `repeats`."""
    from faster_whisper import decode_audio

    from lid_dask.audio import load_windows

    row = {}
    row["partial_decode_s"], row["partial_decode_all"], partial = measure(lambda: load_windows(path, plan), repeats)
    row["partial_source_s"] = partial.source_seconds
    row["partial_windows"] = [(round(w.start, 1), round(w.duration, 1)) for w in partial.windows]
    row["full_decode_s"], row["full_decode_all"], full = measure(lambda: decode_audio(path), repeats)
    row["full_decoded_audio_s"] = len(full) / 16000
    row["decode_ratio"] = row["full_decode_s"] / row["partial_decode_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_long_files", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="at most N long files")
    parser.add_argument("--skip-librosa", action="store_true")
    parser.add_argument("--formats", default="mp3,m4a,opus",
                        help=f"(c): transcode the first long file to these, from {','.join(TRANSCODE)} ('' for none)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import librosa
    from faster_whisper import WhisperModel, decode_audio

    import lid_dask
    from lid_dask.audio import load_windows
    from lid_dask.consensus import ConsensusConfig
    from lid_dask.models.bundled import bundled_model_dir
    from lid_dask.windows import WindowPlan

    df = load_manifest(args.manifest, kind="long")
    if args.limit:
        df = df.head(args.limit)
    if df.empty:
        raise SystemExit("no kind=long files in the manifest")
    info = machine_info()
    print(f"machine: {machine_line(info)}")
    check_quiet_machine()
    warm_page_cache(df["path"])
    plan = WindowPlan("spread", count=3, length=10)
    identifier = lid_dask.Identifier()
    every_window = lid_dask.Identifier(consensus=ConsensusConfig(early_stop=None))
    fw = WhisperModel(str(bundled_model_dir()), device="cpu")
    # warm-up: the first call of each model and of the VAD is not what we measure
    identifier.identify_batch([df["path"].iloc[0]])
    every_window.identify_batch([df["path"].iloc[0]])
    load_windows(df["path"].iloc[0], plan)
    fw.detect_language(decode_audio(df["path"].iloc[0])[: 16000 * 30])

    rows = []
    for _, f in df.iterrows():
        path = f["path"]
        label = base_code(f["language"])
        row = {"uri": f["uri"], "language": f["language"], "codec": f["codec"], "prefix": f["prefix"],
               "prefix_s": f.get("prefix_s", ""), "duration_s": f["duration_s"]}
        print(f"\n== {f['uri']} ({f['duration_s']:.0f} s, {f['codec']}, prefix {f['prefix']} "
              f"{f.get('prefix_s', '')} s, label {f['language']})", flush=True)

        # (a) decoding
        row.update(decode_row(path, plan, args.repeats))
        print(f"   decode: partial {row['partial_decode_s'] * 1000:.0f} ms (FFmpeg decoded {row['partial_source_s']:.1f} s "
              f"of audio), full {row['full_decode_s']:.2f} s -> x{row['decode_ratio']:.0f}", flush=True)

        # (b) end to end, the methods interleaved repeat by repeat (a neighbour's load falls on all alike)
        split = {"load": [], "detect": []}

        def pyav_loop():
            audio = decode_audio(path)
            return fw.detect_language(audio)

        def librosa_loop():
            with Timer() as t_load, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # audioread fallback for m4a warns
                audio, _ = librosa.load(path, sr=16000)
            with Timer() as t_detect:
                out = fw.detect_language(audio)
            split["load"].append(t_load.seconds)
            split["detect"].append(t_detect.seconds)
            return out

        loops = {"lid": lambda: identifier.identify_batch([path])[0],
                 "lid_all_windows": lambda: every_window.identify_batch([path])[0], "pyav_fw": pyav_loop}
        if not args.skip_librosa:
            loops["librosa_fw"] = librosa_loop
        try:
            timed = measure_interleaved(loops, args.repeats)
        except Exception as exc:  # noqa: BLE001 - a user's loop that cannot read the file
            loops.pop("librosa_fw", None)
            row["librosa_fw_error"] = f"{type(exc).__name__}: {exc}"
            timed = measure_interleaved(loops, args.repeats)
        for name, (seconds, all_seconds, _) in timed.items():
            row[f"{name}_s"], row[f"{name}_all"] = seconds, all_seconds
        r = timed["lid"][2]
        row["lid_language"], row["lid_confidence"], row["lid_error"] = r.language, round(r.confidence, 3), r.error_kind
        row["lid_ok"] = base_code(r.language) == label
        row["lid_windows_skipped"] = sum(r.extra.get("windows_skipped", {}).values())
        row["lid_windows_disagree"] = "windows_disagree" in r.review_reasons
        r = timed["lid_all_windows"][2]
        row["lid_all_windows_language"], row["lid_all_windows_confidence"] = r.language, round(r.confidence, 3)
        row["lid_all_windows_disagree"] = "windows_disagree" in r.review_reasons
        lang, prob, _ = timed["pyav_fw"][2]
        row["pyav_fw_language"], row["pyav_fw_prob"] = lang, round(prob, 3)
        row["pyav_fw_ok"] = base_code(lang) == label
        if "librosa_fw" in timed:
            lang, prob, _ = timed["librosa_fw"][2]
            row["librosa_load_s"], row["librosa_detect_s"] = median(split["load"]), median(split["detect"])
            row["librosa_fw_language"], row["librosa_fw_prob"] = lang, round(prob, 3)
            row["librosa_fw_ok"] = base_code(lang) == label
            row["e2e_ratio_vs_librosa"] = row["librosa_fw_s"] / row["lid_s"]
            row["e2e_ratio_all_windows_vs_librosa"] = row["librosa_fw_s"] / row["lid_all_windows_s"]
        row["e2e_ratio_vs_pyav"] = row["pyav_fw_s"] / row["lid_s"]
        print(f"   end to end: lid-dask {row['lid_s']:.2f} s -> {row['lid_language']} ({row['lid_confidence']}, "
              f"{row['lid_windows_skipped']} window(s) skipped); every window {row['lid_all_windows_s']:.2f} s -> "
              f"{row['lid_all_windows_language']} ({row['lid_all_windows_confidence']})"
              + (f"; librosa+fw {row['librosa_fw_s']:.2f} s (load {row['librosa_load_s']:.2f}, detect "
                 f"{row['librosa_detect_s']:.2f}) -> {row['librosa_fw_language']} ({row['librosa_fw_prob']}) "
                 f"x{row['e2e_ratio_vs_librosa']:.1f}" if "librosa_fw_s" in row else
                 f"; librosa+fw failed: {row.get('librosa_fw_error', 'skipped')}")
              + f"; pyav+fw {row['pyav_fw_s']:.2f} s -> {row['pyav_fw_language']} x{row['e2e_ratio_vs_pyav']:.1f}",
              flush=True)
        rows.append(row)

    # (c) decoding, the first long file in other formats
    formats = [f for f in args.formats.split(",") if f]
    by_format = [{"format": r["uri"].rsplit(".", 1)[-1], "codec": r["codec"], "source": "builder",
                  **{k: r[k] for k in ("partial_decode_s", "full_decode_s", "decode_ratio", "partial_source_s")}}
                 for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            target = Path(tmp) / f"long.{fmt}"
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", df["path"].iloc[0], "-vn",
                            *TRANSCODE[fmt], str(target)], check=True)
            warm_page_cache([str(target)])
            row = decode_row(str(target), plan, args.repeats)
            by_format.append({"format": fmt, "codec": TRANSCODE[fmt][1], "source": f"{df['uri'].iloc[0]} via ffmpeg",
                              **{k: row[k] for k in ("partial_decode_s", "full_decode_s", "decode_ratio",
                                                     "partial_source_s")}})
            print(f"   decode, {fmt}: partial {row['partial_decode_s'] * 1000:.0f} ms, full {row['full_decode_s']:.2f} s "
                  f"-> x{row['decode_ratio']:.0f}", flush=True)

    def med(key):
        values = [r[key] for r in rows if key in r]
        return median(values) if values else None

    summary = {
        "files": len(rows),
        "decode_ratio_median": med("decode_ratio"),
        "decode_ratio_min": min(r["decode_ratio"] for r in rows),
        "decode_ratio_by_format": {f"{r['format']} ({r['source']})": r["decode_ratio"] for r in by_format},
        "e2e_ratio_vs_librosa_median": med("e2e_ratio_vs_librosa"),
        "e2e_ratio_vs_librosa_min": min((r["e2e_ratio_vs_librosa"] for r in rows if "e2e_ratio_vs_librosa" in r), default=None),
        "e2e_ratio_vs_pyav_median": med("e2e_ratio_vs_pyav"),
        "e2e_ratio_all_windows_vs_librosa_median": med("e2e_ratio_all_windows_vs_librosa"),
        "accuracy": {m: sum(bool(r.get(f"{m}_ok")) for r in rows) / len(rows) for m in ("lid", "librosa_fw", "pyav_fw")},
        "targets": {"decode_ratio": 20, "e2e_ratio_vs_librosa": 5},
    }
    print("\n== summary")
    print(f"   decode ratio (full / partial): median x{summary['decode_ratio_median']:.0f}, "
          f"min x{summary['decode_ratio_min']:.0f} (target >= 20)")
    if summary["e2e_ratio_vs_librosa_median"] is not None:
        print(f"   end to end vs librosa+faster-whisper: median x{summary['e2e_ratio_vs_librosa_median']:.1f}, "
              f"min x{summary['e2e_ratio_vs_librosa_min']:.1f} (target >= 5); every window "
              f"x{summary['e2e_ratio_all_windows_vs_librosa_median']:.1f}")
    print("   decode ratio by format: " + ", ".join(f"{k} x{v:.0f}" for k, v in summary["decode_ratio_by_format"].items()))
    print(f"   end to end vs PyAV+faster-whisper: median x{summary['e2e_ratio_vs_pyav_median']:.1f}")
    print("   correct: " + ", ".join(f"{k} {v * len(rows):.0f}/{len(rows)}" for k, v in summary["accuracy"].items()))

    payload = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "files": rows,
               "decode_by_format": by_format}
    md = ["# Long files: partial decoding and end to end\n", f"Machine: {machine_line(info)}\n",
          f"Medians of {args.repeats} runs; models loaded before timing.\n",
          md_table([{"file": r["uri"], "min": round(r["duration_s"] / 60, 1), "codec": r["codec"],
                     "prefix": f"{r['prefix']} {r['prefix_s']}", "label": r["language"],
                     "partial decode ms": round(r["partial_decode_s"] * 1000), "full decode s": r["full_decode_s"],
                     "decode x": round(r["decode_ratio"]),
                     "lid-dask s": r["lid_s"], "lid-dask": r["lid_language"], "skipped": r["lid_windows_skipped"],
                     "every window s": r["lid_all_windows_s"], "every window": r["lid_all_windows_language"],
                     "librosa+fw s": r.get("librosa_fw_s"), "librosa+fw": r.get("librosa_fw_language", r.get("librosa_fw_error")),
                     "e2e x (librosa)": r.get("e2e_ratio_vs_librosa"),
                     "e2e x every window (librosa)": r.get("e2e_ratio_all_windows_vs_librosa"),
                     "pyav+fw s": r["pyav_fw_s"], "pyav+fw": r["pyav_fw_language"],
                     "e2e x (pyav)": r["e2e_ratio_vs_pyav"]} for r in rows]),
          "\nDecoding by format (three 10 s windows against a full decode):\n",
          md_table([{"format": r["format"], "codec": r["codec"], "source": r["source"],
                     "partial decode ms": round(r["partial_decode_s"] * 1000), "full decode s": r["full_decode_s"],
                     "decode x": round(r["decode_ratio"])} for r in by_format]),
          f"\nSummary: decode ratio median x{summary['decode_ratio_median']:.0f} (target >= 20); "
          + (f"end to end vs librosa+fw median x{summary['e2e_ratio_vs_librosa_median']:.1f} (target >= 5); "
             if summary["e2e_ratio_vs_librosa_median"] is not None else "")
          + f"vs PyAV+fw median x{summary['e2e_ratio_vs_pyav_median']:.1f}; correct: "
          + ", ".join(f"{k} {v:.0%}" for k, v in summary["accuracy"].items()) + "\n"]
    json_path, md_path = write_results(f"long_files{'_' + args.tag if args.tag else ''}", payload, "\n".join(md), args.out)
    print(f"\nwrote {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
