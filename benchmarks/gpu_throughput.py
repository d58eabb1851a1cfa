"""Whisper language-ID throughput of CTranslate2 on a GPU, with random-weight models of the real sizes.

    python -m benchmarks.gpu_throughput [--models base,large-v3] [--batches 1,8,32,64]
        [--contexts 10,30] [--compute-types float16,int8_float16] [--budget-s 330] [--out DIR]
    python -m benchmarks.gpu_throughput --dask-check      # LocalCUDACluster starts, a task runs on its GPU
    python -m benchmarks.gpu_throughput --e2e             # a lid-dask run through the ledger on that cluster
    python -m benchmarks.gpu_throughput --lock-check requirements/image.lock   # this environment vs the lock
    python -m benchmarks.gpu_throughput --lock-subset 'av ctranslate2' --lock LOCK --out FILE  # part of a lock
    python -m benchmarks.gpu_throughput --cpu-smoke [--e2e]   # the non-GPU parts, tiny, on CPU

(from the repository root; ``bash benchmarks/gpu_check.sh`` runs it on a lent GPU machine). Only
``--e2e`` imports lid_dask (the working tree travels there); nothing imports ``benchmarks.common``.

Meant for a lent GPU machine that cannot reach the Hub and to which the 145 MB bundled model
cannot travel: the models are built there, with random weights, from the Hub configurations of
openai/whisper-base and openai/whisper-large-v3 written out below (transformers
``WhisperForConditionalGeneration(WhisperConfig(...))``, random init), and converted in memory
with CTranslate2's TransformersConverter (no save/reload of the PyTorch weights). The vocabulary
is Whisper's layout made up on the spot (special tokens at their real ids, placeholders for the
BPE tokens) unless ``--tokenizer tokenizer.json`` is given: language ID only needs the special
tokens; a word-level tokenizer.json of that vocabulary is written beside the model so that
lid-dask's ``whisper-ct2:FOLDER`` loads it. Random weights make the answers meaningless; the time
per window is the real one.

Timed: ``ctranslate2.models.Whisper.detect_language`` on log-mel batches [batch, n_mels, frames]
built on the host (as lid-dask does), for each model, compute type, context and batch size;
windows/s = batch x calls / time, after a warm-up, with the GPU memory the process holds at its
peak (NVML, sampled during the timed calls). Each row also says what that pace means for an
archive: files/s at ``--windows-per-file`` model calls per file (lid-dask's default plan) and
audio-hours per GPU-hour for files of ``--minutes-per-file``. Writes gpu_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import threading
import time
from pathlib import Path

# The Hub's config.json of each model, the fields that set its size and its special tokens.
ARCHITECTURES = {
    "base": dict(  # openai/whisper-base
        vocab_size=51865, num_mel_bins=80, d_model=512, encoder_layers=6, encoder_attention_heads=8,
        decoder_layers=6, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, begin_suppress_tokens=[220, 50257],
    ),
    "large-v3": dict(  # openai/whisper-large-v3
        vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32, encoder_attention_heads=20,
        decoder_layers=32, decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        bos_token_id=50257, eos_token_id=50257, pad_token_id=50256, begin_suppress_tokens=[220, 50257],
    ),
    "tiny-test": dict(  # not a Whisper: a few MB, for --cpu-smoke
        vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=2,
        decoder_layers=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, begin_suppress_tokens=[220, 50257],
    ),
}
BUILD_ESTIMATE_S = {"base": 20, "large-v3": 150, "tiny-test": 5}  # building + converting on the device
EOT = 50257  # <|endoftext|>; <|startoftranscript|> follows, then the language tokens


def log(*args):
    print(*args, flush=True)


# -- building -----------------------------------------------------------------------------------

def whisper_languages(n: int) -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    codes = list(LANGUAGES)  # Whisper's order; large-v3 added yue as the 100th
    return codes[:n]


def synthetic_vocabulary(vocab_size: int, n_languages: int) -> list[str]:
    """Whisper's token layout: BPE placeholders, then the special tokens at their real ids, then
    the timestamp tokens; what the converter and CTranslate2's Whisper look up by name."""
    specials = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in whisper_languages(n_languages)]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                 "<|notimestamps|>"]
    tokens = [f"tok{i}" for i in range(EOT)] + specials
    tokens[EOT - 1] = ""  # the multilingual vocabulary has an empty token here; CTranslate2 checks for it
    tokens += ["<|%.2f|>" % (i * 0.02) for i in range(vocab_size - len(tokens))]
    return tokens[:vocab_size]


class _Vocabulary:
    """The part of a tokenizer that CTranslate2's Whisper converter reads."""

    additional_special_tokens: list[str] = []  # lang ids come from generation_config.lang_to_id

    def __init__(self, tokens: list[str]):
        self._vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)


def build_ct2_model(name: str, out_dir: Path, tokenizer_json: str | None, build_device: str) -> dict:
    """Random-weight Whisper `name` converted to CTranslate2 float16 in `out_dir` (idempotent)."""
    done = out_dir / ".complete"
    if done.exists():
        return json.loads(done.read_text())
    import ctranslate2
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    started = time.perf_counter()
    dims = ARCHITECTURES[name]
    n_languages = 100 if dims["vocab_size"] == 51866 else 99
    if tokenizer_json:
        import tokenizers

        tokens_by_id = tokenizers.Tokenizer.from_file(tokenizer_json).get_vocab(with_added_tokens=True)
        tokens = [t for t, _ in sorted(tokens_by_id.items(), key=lambda kv: kv[1])]
        tokens += ["<|%.2f|>" % (i * 0.02) for i in range(dims["vocab_size"] - len(tokens))]
    else:
        tokens = synthetic_vocabulary(dims["vocab_size"], n_languages)
    index = {t: i for i, t in enumerate(tokens)}
    lang_to_id = {f"<|{c}|>": index[f"<|{c}|>"] for c in whisper_languages(n_languages) if f"<|{c}|>" in index}

    config = WhisperConfig(**dims)
    staging = out_dir.with_name(out_dir.name + ".hf")
    staging.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(staging)  # the converter reads config.json; the weights stay in memory
    torch.manual_seed(0)
    with torch.device(build_device):
        model = WhisperForConditionalGeneration(config)
    model = model.half().cpu() if build_device != "cpu" else model
    model.generation_config = GenerationConfig(
        decoder_start_token_id=index["<|startoftranscript|>"], bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT,
        max_length=448, no_timestamps_token_id=index["<|notimestamps|>"], is_multilingual=True,
        lang_to_id=lang_to_id, task_to_id={"translate": index["<|translate|>"], "transcribe": index["<|transcribe|>"]},
        suppress_tokens=[], begin_suppress_tokens=[220, EOT],
    )
    built = time.perf_counter()
    vocabulary = _Vocabulary(tokens)

    class InMemoryConverter(ctranslate2.converters.TransformersConverter):
        def load_model(self, *args, **kwargs):
            return model

        def load_tokenizer(self, *args, **kwargs):
            return vocabulary

    InMemoryConverter(str(staging)).convert(str(out_dir), quantization="float16", force=True)
    write_tokenizer(out_dir, tokens, tokenizer_json)
    (out_dir / "preprocessor_config.json").write_text(json.dumps({"feature_size": dims["num_mel_bins"]}))
    info = {"model": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "n_mels": dims["num_mel_bins"], "languages": len(lang_to_id),
            "vocabulary": "tokenizer.json" if tokenizer_json else "synthetic",
            "build_s": round(built - started, 1), "convert_s": round(time.perf_counter() - built, 1),
            "model_bin_mb": round((out_dir / "model.bin").stat().st_size / 1e6, 1)}
    done.write_text(json.dumps(info))
    return info


def write_tokenizer(out_dir: Path, tokens: list[str], tokenizer_json: str | None) -> None:
    """tokenizer.json beside the model, which lid-dask reads the language tokens from: the given
    one, else a word-level tokenizer of the vocabulary (only its id -> token table is used)."""
    if tokenizer_json:
        shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
        return
    import tokenizers
    from tokenizers.models import WordLevel

    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    tokenizers.Tokenizer(WordLevel(vocab, unk_token="<|endoftext|>")).save(str(out_dir / "tokenizer.json"))


# -- GPU memory ---------------------------------------------------------------------------------

class GpuMemory:
    """Device memory in use (NVML, all processes), sampled every 10 ms inside ``with``; `peak` is the
    most seen. CTranslate2's caching allocator keeps freed blocks, so a cell's peak can include an
    earlier cell's of the same process: an upper bound. Without NVML or a GPU (the CPU smoke)
    `available` is False and every figure None."""

    def __init__(self):
        self.available, self._handle, self.peak = False, None, None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.available = True
        except Exception:  # noqa: BLE001 - no NVML library, no driver or no GPU
            pass

    def used_mib(self) -> float | None:
        if not self.available:
            return None
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def __enter__(self):
        self.peak, self._stop = self.used_mib(), threading.Event()
        if self.available:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.used_mib())

    def __exit__(self, *exc):
        self._stop.set()
        if self.available:
            self._thread.join()
            self.peak = max(self.peak, self.used_mib())


# -- timing -------------------------------------------------------------------------------------

def time_detect(model, n_mels: int, batch: int, context_s: float, min_time: float, rng,
                memory: GpuMemory | None = None) -> dict:
    import ctranslate2
    import numpy as np

    frames = int(context_s * 100)
    mels = rng.standard_normal((batch, n_mels, frames), dtype=np.float32)
    mels = np.ascontiguousarray(mels.clip(-1.5, 1.5))  # log-mel range after Whisper's normalisation

    def call():
        return model.detect_language(ctranslate2.StorageView.from_array(mels))

    memory = memory or GpuMemory()
    with memory:
        call()  # warm-up: allocations, kernels, autotuning
        call()
        calls, started = 0, time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - started
            if (elapsed >= min_time and calls >= 3) or calls >= 200:
                break
    return {"batch": batch, "context_s": context_s, "calls": calls, "ms_per_call": round(1000 * elapsed / calls, 2),
            "windows_per_s": round(batch * calls / elapsed, 1),
            "audio_s_per_s": round(batch * calls * context_s / elapsed, 0),
            "gpu_mib_peak": None if memory.peak is None else round(memory.peak)}


def archive_figures(windows_per_s: float, windows_per_file: float, minutes_per_file: float) -> dict:
    """What a pace of windows/s means for an archive: files/s at `windows_per_file` model calls
    per file, and hours of (whole) audio files identified per GPU-hour."""
    files_per_s = windows_per_s / windows_per_file
    return {"files_per_s": round(files_per_s, 1),
            "audio_h_per_gpu_h": round(files_per_s * 3600 * minutes_per_file / 60)}


def run_throughput(args) -> dict:
    import ctranslate2
    import numpy as np

    device = args.device
    results = {"machine": machine(), "device": device, "models": {}, "rows": [], "skipped": []}
    deadline = time.monotonic() + args.budget_s
    rng = np.random.default_rng(0)
    build_device = "cuda" if device == "cuda" else "cpu"
    out_file = Path(args.out) / ("gpu_throughput_cpu_smoke.json" if args.cpu_smoke else "gpu_throughput.json")

    def save():  # after every cell, so that a run killed by its time box still leaves its figures
        out_file.write_text(json.dumps({**results, "table": summary_table(results)}, indent=2))

    memory = GpuMemory()
    results["gpu_mib_before_models"] = None if memory.used_mib() is None else round(memory.used_mib())
    results["assumptions"] = {"windows_per_file": args.windows_per_file, "minutes_per_file": args.minutes_per_file}
    for name in args.models:
        built = (Path(args.workdir) / f"whisper-{name}-ct2" / ".complete").exists()
        if deadline - time.monotonic() < (0 if built else BUILD_ESTIMATE_S.get(name, 60)):
            results["skipped"].append(f"{name}: all (time budget)")
            continue
        log(f"== building random-weight {name} ...")
        try:
            info = build_ct2_model(name, Path(args.workdir) / f"whisper-{name}-ct2", args.tokenizer, build_device)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next model
            log(f"   FAILED to build {name}: {type(exc).__name__}: {exc}")
            results["models"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        results["models"][name] = info
        log(f"   {info}")
        for compute_type in args.compute_types:
            if time.monotonic() > deadline:
                results["skipped"].append(f"{name} {compute_type}: time budget")
                continue
            try:
                t0 = time.perf_counter()
                model = ctranslate2.models.Whisper(str(Path(args.workdir) / f"whisper-{name}-ct2"), device=device,
                                                   compute_type=compute_type)
                load_s = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001
                log(f"   FAILED to load {name} as {compute_type}: {type(exc).__name__}: {exc}")
                results["rows"].append({"model": name, "compute_type": compute_type, "error": str(exc)})
                continue
            for context in args.contexts:
                for batch in args.batches:
                    if time.monotonic() > deadline:
                        results["skipped"].append(f"{name} {compute_type} {context}s b{batch}: time budget")
                        continue
                    try:
                        row = time_detect(model, info["n_mels"], batch, context, args.min_time, rng, memory)
                        row.update(archive_figures(row["windows_per_s"], args.windows_per_file, args.minutes_per_file))
                    except Exception as exc:  # noqa: BLE001 - e.g. out of memory at a large batch
                        row = {"batch": batch, "context_s": context, "error": f"{type(exc).__name__}: {exc}"[:300]}
                    row = {"model": name, "compute_type": compute_type, "load_s": round(load_s, 1), **row}
                    results["rows"].append(row)
                    save()
                    log("   " + (f"{name:<9} {compute_type:<13} ctx {context:>4.0f} s  batch {batch:>3}: "
                                 f"{row['windows_per_s']:>8.1f} windows/s  {row['ms_per_call']:>8.1f} ms/call  "
                                 f"GPU {row['gpu_mib_peak'] if row['gpu_mib_peak'] is not None else '-'} MiB"
                                 if "error" not in row else f"{name} {compute_type} {context}s b{batch}: {row['error']}"))
            del model
    save()
    return results


def machine() -> dict:
    info = {"host": platform.node(), "python": sys.version.split()[0], "cores": os.cpu_count()}
    try:
        import ctranslate2

        info["ctranslate2"] = ctranslate2.__version__
        info["cuda_devices"] = ctranslate2.get_cuda_device_count()
        info["cuda_compute_types"] = sorted(ctranslate2.get_supported_compute_types("cuda")) if info["cuda_devices"] else []
    except Exception as exc:  # noqa: BLE001
        info["ctranslate2_error"] = str(exc)
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    info["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    return info


def summary_table(results: dict) -> str:
    rows = [r for r in results["rows"] if "error" not in r]
    lines = []
    for name in results["models"]:
        for compute_type in sorted({r["compute_type"] for r in rows if r["model"] == name}):
            for context in sorted({r["context_s"] for r in rows if r["model"] == name}):
                cells = {r["batch"]: r["windows_per_s"] for r in rows
                         if r["model"] == name and r["compute_type"] == compute_type and r["context_s"] == context}
                if cells:
                    lines.append(f"{name:<9} {compute_type:<13} {context:>3.0f} s  "
                                 + "  ".join(f"b{b}: {v:>7.1f}" for b, v in sorted(cells.items())))
    best = []
    for name in results["models"]:
        for compute_type in sorted({r["compute_type"] for r in rows if r["model"] == name}):
            for context in sorted({r["context_s"] for r in rows if r["model"] == name}):
                cells = [r for r in rows if r["model"] == name and r["compute_type"] == compute_type
                         and r["context_s"] == context]
                if cells:
                    top = max(cells, key=lambda r: r["windows_per_s"])
                    memory = max((r["gpu_mib_peak"] for r in cells if r.get("gpu_mib_peak") is not None), default=None)
                    best.append(f"{name:<9} {compute_type:<13} {context:>3.0f} s  b{top['batch']:<3} "
                                f"{top['windows_per_s']:>8.1f} windows/s {top.get('files_per_s', 0):>8.1f} files/s "
                                f"{top.get('audio_h_per_gpu_h', 0):>10,.0f} audio-h/GPU-h  "
                                f"GPU {'-' if memory is None else f'{memory:,.0f}'} MiB")
    assumptions = results.get("assumptions", {})
    errors = [r for r in results["rows"] if "error" in r]
    header = "windows/s (model, compute type, context, batch)"
    text = "\n".join([header] + lines)
    if best:
        text += ("\nbest batch: files/s at {windows_per_file} model calls per file; audio-hours per GPU-hour of "
                 "{minutes_per_file:g}-minute files; peak GPU memory in use\n").format(**assumptions) + "\n".join(best)
    if errors:
        text += "\nerrors: " + "; ".join(f"{r['model']} {r['compute_type']} {r.get('context_s', '')} "
                                          f"b{r.get('batch', '')}: {r['error'][:120]}" for r in errors)
    if results["skipped"]:
        text += "\nskipped: " + "; ".join(results["skipped"])
    return text


# -- dask-cuda ----------------------------------------------------------------------------------

def _gpu_task(model_dir: str) -> dict:
    """Runs on the dask-cuda worker: which GPU it sees, and one detect_language batch on it."""
    import ctranslate2
    import numpy as np

    out = {"pid": os.getpid(), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "ct2_cuda_devices": ctranslate2.get_cuda_device_count()}
    if model_dir and Path(model_dir).exists():
        model = ctranslate2.models.Whisper(model_dir, device="cuda", compute_type="float16")
        mels = np.zeros((8, model.n_mels if hasattr(model, "n_mels") else 80, 1000), dtype=np.float32)
        t0 = time.perf_counter()
        result = model.detect_language(ctranslate2.StorageView.from_array(mels))
        out["detect_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        out["top"] = result[0][0]
        out["model_device"] = model.device
    return out


def dask_check(args) -> dict:
    try:
        from distributed.diagnostics import nvml

        gpus = nvml.device_get_count()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"distributed/NVML unavailable: {type(exc).__name__}: {exc}"}
    if gpus == 0:
        return {"ok": False, "error": "NVML sees no GPU: LocalCUDACluster cannot start here (use LocalCluster)"}
    try:
        from dask_cuda import LocalCUDACluster
        from distributed import Client
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"cannot import dask_cuda: {type(exc).__name__}: {exc}"}
    started = time.perf_counter()
    model_dir = str(Path(args.workdir) / "whisper-base-ct2")
    with LocalCUDACluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        up = time.perf_counter() - started
        workers = client.scheduler_info()["workers"]
        result = client.submit(_gpu_task, model_dir, pure=False).result(timeout=120)
    return {"ok": result.get("ct2_cuda_devices", 0) > 0, "gpus_nvml": gpus, "cluster_start_s": round(up, 1),
            "workers": len(workers), "task": result}


# -- end to end: a lid-dask run through the ledger -----------------------------------------------

def e2e(args) -> dict:
    """A lid-dask run (SQLite ledger) over the bundled samples, copied `--e2e-copies` times, with the
    random-weight model, on the cluster lid-dask picks here: a LocalCUDACluster when NVML sees a
    GPU, else a LocalCluster of one worker (the CPU smoke, with the tiny model)."""
    import lid_dask
    from lid_dask.cluster import cluster_client, gpu_count
    from lid_dask.runs import Run

    gpus = gpu_count()
    name = "base" if gpus and not args.cpu_smoke else "tiny-test"
    model_dir = Path(args.workdir) / f"whisper-{name}-ct2"
    if not (model_dir / "tokenizer.json").exists():  # built by an older version of this script
        shutil.rmtree(model_dir, ignore_errors=True)
    started = time.perf_counter()
    info = build_ct2_model(name, model_dir, args.tokenizer, "cuda" if gpus else "cpu")
    work = Path(args.workdir) / "e2e"
    shutil.rmtree(work, ignore_errors=True)
    audio = work / "audio"
    audio.mkdir(parents=True)
    samples = [p for p in sorted((Path(lid_dask.__file__).parent / "samples").iterdir()) if p.suffix != ".csv"]
    for copy in range(args.e2e_copies):
        for sample in samples:
            shutil.copyfile(sample, audio / f"{copy:03d}-{sample.name}")
    files = len(samples) * args.e2e_copies
    device, compute_type = ("cuda", "float16") if gpus else ("cpu", "int8")
    spec = f"whisper-ct2:{model_dir}?compute_type={compute_type}"
    run = Run.create("gpu-e2e", [str(audio)], db=f"sqlite:///{work / 'ledger.db'}", models=[spec], device=device)
    registered = time.perf_counter()
    with cluster_client(None, n_workers=1, dashboard_address=None) as client:
        cluster = type(client.cluster).__name__
        up = time.perf_counter()
        workers = client.scheduler_info()["workers"]
        progress = run.execute(client, progress=False)
        finished = time.perf_counter()
    status = run.status()
    results = run.results()
    workers_seen = run.workers()
    fingerprints = [json.loads(f) if isinstance(f, str) else f for f in workers_seen.get("fingerprint", [])]
    out = {"cluster": cluster, "gpus": gpus, "workers": len(workers),
           "worker_resources": [w.get("resources", {}) for w in workers.values()],
           "model": name, "model_build": info, "spec": spec, "files": files, "counts": status.counts,
           "answered": int(results["language"].notna().sum()),
           "error_kinds": {k: int(v) for k, v in results["error_kind"].value_counts().items()},
           "worker_cuda": [f.get("cuda") for f in fingerprints if isinstance(f, dict)],
           "worker_status": list(workers_seen.get("status", [])),
           "ignored": dict(progress.ignored), "build_s": round(registered - started, 1),
           "cluster_start_s": round(up - registered, 1), "run_s": round(finished - up, 1),
           "files_per_s": round(files / max(finished - up, 1e-9), 2)}
    out["ok"] = status.counts.get("done", 0) == files and not out["ignored"]
    return out


# -- the lock file ------------------------------------------------------------------------------

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(text: str) -> dict[str, dict]:
    """{name: {version, lines}} of a hash-locked requirements file (``uv pip compile
    --generate-hashes``): each entry's requirement line and its ``--hash`` lines."""
    entries, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            current = {"version": match[3], "lines": [line]}
            entries[canonical(match[1])] = current
        elif current is not None and line.strip().startswith("--hash="):
            current["lines"].append(line)
        elif not line.startswith((" ", "\t")):
            current = None
    return entries


def lock_subset(lock: str, names: list[str]) -> str:
    """The entries of `names` (with their hashes) from the lock file `lock`: a smaller lock that
    ``pip install --require-hashes`` accepts."""
    entries = lock_entries(Path(lock).read_text())
    missing = [n for n in names if canonical(n) not in entries]
    if missing:
        raise SystemExit(f"{lock} does not lock {', '.join(missing)}")
    body = [line for n in names for line in entries[canonical(n)]["lines"]]
    return f"# The part of {lock} that benchmarks/gpu_prepare.sh carries to the GPU machine.\n" + "\n".join(body) + "\n"


def lock_check(lock: str, carried: str | None = None) -> dict:
    """This environment against the lock: each locked package at the locked version, at another,
    or absent; `carried` (a lock made by `lock_subset`) names those installed from it."""
    from importlib import metadata

    entries = lock_entries(Path(lock).read_text())
    carried_names = set(lock_entries(Path(carried).read_text())) if carried and Path(carried).exists() else set()
    locked, differs, absent = [], {}, []
    for name, entry in sorted(entries.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
            continue
        (locked.append(name) if have == entry["version"] else differs.__setitem__(name, f"{have} (locked {entry['version']})"))
    not_carried = sorted(carried_names - set(locked))
    return {"lock": lock, "packages": len(entries), "at_locked_version": len(locked),
            "carried_from_lock": sorted(carried_names), "carried_but_not_in_effect": not_carried,
            "other_version": differs, "absent": absent,
            "ok": bool(entries) and not not_carried}


def lock_summary(check: dict) -> str:
    return (f"lock {check['lock']}: {check['packages']} packages; {check['at_locked_version']} at the locked version "
            f"({len(check['carried_from_lock'])} installed from it with --require-hashes); "
            f"{len(check['other_version'])} at another version: "
            + (", ".join(f"{k} {v}" for k, v in check["other_version"].items()) or "none")
            + f"; {len(check['absent'])} absent: " + (", ".join(check["absent"]) or "none")
            + (f"; CARRIED BUT NOT IN EFFECT: {', '.join(check['carried_but_not_in_effect'])}"
               if check["carried_but_not_in_effect"] else ""))


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_throughput", description=__doc__.splitlines()[0])
    csv = lambda text, kind=str: [kind(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--models", type=csv, default=["base", "large-v3"])
    parser.add_argument("--batches", type=lambda t: csv(t, int), default=[1, 8, 32, 64])
    parser.add_argument("--contexts", type=lambda t: csv(t, float), default=[10.0, 30.0])
    parser.add_argument("--compute-types", type=csv, default=["float16", "int8_float16"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per cell")
    parser.add_argument("--budget-s", type=float, default=330, help="stop starting new cells after this")
    parser.add_argument("--workdir", default="/tmp/lid-gpu-models")
    parser.add_argument("--tokenizer", default=None, help="a Whisper tokenizer.json (default: synthetic vocabulary)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/out/gpu")
    parser.add_argument("--windows-per-file", type=float, default=2.33,
                        help="model calls per file, for files/s (lid-dask's auto:3x10 plan with its early stop)")
    parser.add_argument("--minutes-per-file", type=float, default=30.0, help="for audio-hours per GPU-hour")
    parser.add_argument("--dask-check", action="store_true")
    parser.add_argument("--e2e", action="store_true", help="a lid-dask run through a SQLite ledger on a local cluster")
    parser.add_argument("--e2e-copies", type=int, default=None, help="copies of the 22 samples (default 10; 1 on CPU)")
    parser.add_argument("--lock-check", metavar="LOCK", help="compare this environment with a lock file")
    parser.add_argument("--carried", metavar="LOCK", help="with --lock-check: the part of it installed from carry")
    parser.add_argument("--lock-subset", metavar="NAMES", help="write these packages' entries of --lock to --out")
    parser.add_argument("--lock", metavar="LOCK", default="requirements/image.lock")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model and base on CPU, int8, small batches")
    args = parser.parse_args(argv)

    if args.lock_subset:  # --out is the file here
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(lock_subset(args.lock, args.lock_subset.split()))
        log(f"wrote {args.out}: {len(args.lock_subset.split())} packages of {args.lock}")
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.lock_check:
        check = lock_check(args.lock_check, args.carried)
        (Path(args.out) / "lock_check.json").write_text(json.dumps(check, indent=2))
        log(lock_summary(check))
        return 0 if check["ok"] else 1

    if args.e2e_copies is None:
        args.e2e_copies = 1 if args.cpu_smoke else 10
    if args.cpu_smoke:
        args.device, args.models, args.compute_types = "cpu", ["tiny-test", "base"], ["int8"]
        args.batches, args.contexts, args.min_time = [1, 2], [10.0], 0.2
        args.workdir = args.workdir + "-cpu"
    if args.e2e:
        result = e2e(args)
        log("e2e: " + json.dumps(result))
        (Path(args.out) / ("e2e_cpu_smoke.json" if args.cpu_smoke else "e2e.json")).write_text(json.dumps(result, indent=2))
        return 0 if result["ok"] else 4
    if args.device == "cuda" and not args.dask_check and not args.cpu_smoke:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() == 0:
            log("FAIL: CTranslate2 sees no CUDA device (no GPU, no driver, or libcublas.so.12 missing). "
                "This benchmark needs a CUDA machine; `--cpu-smoke` runs its non-GPU parts.")
            return 2

    if args.dask_check:
        result = dask_check(args)
        log("dask-cuda: " + json.dumps(result))
        (Path(args.out) / "dask_cuda_check.json").write_text(json.dumps(result, indent=2))
        return 0 if result["ok"] else 3

    results = run_throughput(args)
    log("\n" + summary_table(results))
    ok = any("error" not in r for r in results["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
