"""Whisper language-ID throughput of CTranslate2 on a GPU, with random-weight models of the real sizes.

    python -m benchmarks.gpu_throughput [--models base,large-v3] [--batches 1,8,32,64]
        [--contexts 10,30] [--compute-types float16,int8_float16] [--budget-s 330] [--out DIR]
    python -m benchmarks.gpu_throughput --dask-check      # LocalCUDACluster starts, a task runs on its GPU
    python -m benchmarks.gpu_throughput --cpu-smoke       # the non-GPU parts, tiny, on CPU

(from the repository root; ``bash benchmarks/gpu_check.sh`` runs it on a lent GPU machine). It
imports nothing from ``benchmarks.common`` or lid_dask: that machine has neither.

Meant for a lent GPU machine that cannot reach the Hub and to which the 145 MB bundled model
cannot travel: the models are built there, with random weights, from the Hub configurations of
openai/whisper-base and openai/whisper-large-v3 written out below (transformers
``WhisperForConditionalGeneration(WhisperConfig(...))``, random init), and converted in memory
with CTranslate2's TransformersConverter (no save/reload of the PyTorch weights). The vocabulary
is Whisper's layout made up on the spot (special tokens at their real ids, placeholders for the
BPE tokens) unless ``--tokenizer tokenizer.json`` is given: language ID only needs the special
tokens. Random weights make the answers meaningless; the time per window is the real one.

Timed: ``ctranslate2.models.Whisper.detect_language`` on log-mel batches [batch, n_mels, frames]
built on the host (as lid-dask does), for each model, compute type, context and batch size;
windows/s = batch x calls / time, after a warm-up. Writes gpu_throughput.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
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
    info = {"model": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "n_mels": dims["num_mel_bins"], "languages": len(lang_to_id),
            "vocabulary": "tokenizer.json" if tokenizer_json else "synthetic",
            "build_s": round(built - started, 1), "convert_s": round(time.perf_counter() - built, 1),
            "model_bin_mb": round((out_dir / "model.bin").stat().st_size / 1e6, 1)}
    done.write_text(json.dumps(info))
    return info


# -- timing -------------------------------------------------------------------------------------

def time_detect(model, n_mels: int, batch: int, context_s: float, min_time: float, rng) -> dict:
    import ctranslate2
    import numpy as np

    frames = int(context_s * 100)
    mels = rng.standard_normal((batch, n_mels, frames), dtype=np.float32)
    mels = np.ascontiguousarray(mels.clip(-1.5, 1.5))  # log-mel range after Whisper's normalisation

    def call():
        return model.detect_language(ctranslate2.StorageView.from_array(mels))

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
            "audio_s_per_s": round(batch * calls * context_s / elapsed, 0)}


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
                        row = time_detect(model, info["n_mels"], batch, context, args.min_time, rng)
                    except Exception as exc:  # noqa: BLE001 - e.g. out of memory at a large batch
                        row = {"batch": batch, "context_s": context, "error": f"{type(exc).__name__}: {exc}"[:300]}
                    row = {"model": name, "compute_type": compute_type, "load_s": round(load_s, 1), **row}
                    results["rows"].append(row)
                    save()
                    log("   " + (f"{name:<9} {compute_type:<13} ctx {context:>4.0f} s  batch {batch:>3}: "
                                 f"{row['windows_per_s']:>8.1f} windows/s  {row['ms_per_call']:>8.1f} ms/call"
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
    errors = [r for r in results["rows"] if "error" in r]
    header = "windows/s (model, compute type, context, batch)"
    text = "\n".join([header] + lines)
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
    parser.add_argument("--dask-check", action="store_true")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model and base on CPU, int8, small batches")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    if args.cpu_smoke:
        args.device, args.models, args.compute_types = "cpu", ["tiny-test", "base"], ["int8"]
        args.batches, args.contexts, args.min_time = [1, 2], [10.0], 0.2
        args.workdir = args.workdir + "-cpu"
    elif args.device == "cuda" and not args.dask_check:
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
