"""What an audio archive costs on SaladCloud, and how long it takes: a table from files/s per GPU node.

    python -m benchmarks.cost_model [--files-per-second X] [--terabytes 300] [--nodes 100,500]
        [--minutes-per-file 30] [--bitrate-kbps 128] [--prices 'RTX 4090 batch=0.16,...']
        [--gpu-check benchmarks/out/gpu/gpu_throughput.json --gpu-scale F] [--json OUT]

(from the repository root). ``--files-per-second`` is the measured pace of one worker node, end to
end (``lid-dask status`` of a real run divided by its nodes, or the end-to-end figure of
``bash benchmarks/gpu_check.sh``); give it and the table uses it as it is. Without it the pace is an
ESTIMATE, the slowest of three ceilings per node, each printed with its inputs:

- GPU: windows per file over windows/s. Windows/s come from ``--gpu-check`` (a gpu_throughput.json,
  scaled by ``--gpu-scale`` from the machine that measured it to the fleet's GPU), else from the
  model's arithmetic (FLOPs per window, computed below from the Whisper architecture) and the GPU's
  dense FP16 tensor peak times an efficiency that is an assumption, not a measurement;
- CPU: decoding and Silero VAD run in ``decode_threads`` threads, the log-mel in the task's one
  thread (seconds per file measured on the project's CPU machine, benchmarks/README.md);
- network: the bytes a worker reads per file over its download bandwidth. s3fs reads ahead 50 MiB
  blocks by default, so a file under 50 MiB is read whole however few windows are decoded.

The fleet's pace is nodes x that, less the capacity missing while interrupted nodes are replaced,
capped by the orchestrator's own ceiling (benchmarks/DISTRIBUTED.md). Interruptions also redo, on
average, half a batch of billed work plus a worker's start on the new node. cluster/salad/COSTS.md
cites every default and shows the table; rerun this when real figures exist.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Whisper's sizes (the Hub config.json of openai/whisper-base and openai/whisper-large-v3).
ARCHITECTURES = {
    "base": dict(d_model=512, layers=6, ffn=2048, mels=80, vocab=51865),
    "large-v3": dict(d_model=1280, layers=32, ffn=5120, mels=128, vocab=51866),
}
# Dense FP16 tensor peak, TFLOPS: the RTX 4090's as waredb.com lists it (165.15; 330.3 with sparsity),
# the H200's from NVIDIA's datasheet (1,979 with sparsity). Another GPU: --tflops.
GPU_TFLOPS = {"rtx-4090": 165.2, "h200": 989.0}
# Assumed share of that peak CTranslate2 reaches at batch 32 (small matrices run far from it).
EFFICIENCY = {"base": 0.15, "large-v3": 0.35}
DEFAULT_PRICES = "RTX 3060 low=0.047,RTX 3090 batch=0.09,RTX 4090 batch=0.16,RTX 4090 high=0.30"


def window_gflop(model: str, context_s: float) -> float:
    """FLOPs of one language-ID call on one window: the encoder over `context_s` seconds of log-mel
    (100 frames a second, halved by the second convolution), then one decoder step, whose
    cross-attention projects every encoder position into keys and values in each layer."""
    a = ARCHITECTURES[model]
    d, layers, ffn = a["d_model"], a["layers"], a["ffn"]
    frames = context_s * 100
    pos = frames / 2
    conv = 2 * a["mels"] * d * 3 * frames + 2 * d * d * 3 * pos
    encoder_layer = 2 * pos * 4 * d * d + 2 * 2 * pos * d * ffn + 2 * 2 * pos * pos * d
    decoder_layer = 2 * 2 * pos * d * d + 2 * 4 * d * d + 2 * 2 * d * ffn + 2 * 2 * pos * d
    return (conv + layers * encoder_layer + layers * decoder_layer + 2 * d * a["vocab"]) / 1e9


def measured_windows_per_s(path: str, model: str, compute_type: str, batch: int) -> dict[float, float]:
    """{context: windows/s} from gpu_throughput.json: the best batch up to `batch` per context."""
    rows = [r for r in json.loads(Path(path).read_text())["rows"]
            if "error" not in r and r["model"] == model and r["compute_type"] == compute_type and r["batch"] <= batch]
    best: dict[float, float] = {}
    for row in rows:
        best[row["context_s"]] = max(best.get(row["context_s"], 0.0), row["windows_per_s"])
    if not best:
        raise SystemExit(f"{path} has no {model} {compute_type} rows with batch <= {batch}")
    return best


def per_node(args) -> dict:
    """Files/s of one worker node: measured, or the slowest of the GPU, CPU and network ceilings."""
    file_bytes = args.bitrate_kbps * 1000 / 8 * args.minutes_per_file * 60
    window_bytes = args.bitrate_kbps * 1000 / 8 * args.context
    block = args.read_block_mib * 2**20
    read_bytes = min(file_bytes, block + args.windows_read * (window_bytes + block))
    out = {"file_mb": file_bytes / 1e6, "read_mb_per_file": read_bytes / 1e6}
    if args.gpu_check:
        measured = measured_windows_per_s(args.gpu_check, args.model, args.compute_type, args.batch)
        w_short = measured.get(args.context) or min(measured.values())
        w_long = measured.get(30.0) or w_short * window_gflop(args.model, args.context) / window_gflop(args.model, 30.0)
        w_short, w_long = w_short * args.gpu_scale, w_long * args.gpu_scale
        source = f"measured ({args.gpu_check}, x{args.gpu_scale:g})"
    else:
        tflops = args.tflops or GPU_TFLOPS[args.gpu]
        effective = tflops * 1e3 * (args.efficiency or EFFICIENCY[args.model])
        w_short = effective / window_gflop(args.model, args.context)
        w_long = effective / window_gflop(args.model, 30.0)
        source = (f"estimate: {args.gpu if not args.tflops else 'GPU'} {tflops:g} TFLOPS x "
                  f"{args.efficiency or EFFICIENCY[args.model]:g} / {window_gflop(args.model, args.context):.0f} GFLOP "
                  f"per {args.context:g} s window")
    gpu_s = args.windows_per_file / w_short + args.windows_per_file * args.recheck_fraction / w_long
    cpu_s = max(args.serial_cpu_s, args.parallel_cpu_s / args.decode_threads)
    net_s = read_bytes * 8 / (args.download_mbps * 1e6)
    ceilings = {"gpu": 1 / gpu_s, "cpu": 1 / cpu_s, "network": 1 / net_s}
    out.update(windows_per_s={"short": w_short, "30s": w_long}, windows_source=source, ceilings=ceilings)
    if args.files_per_second:
        out.update(files_per_s=args.files_per_second, bound="measured")
    else:
        bound = min(ceilings, key=ceilings.get)
        out.update(files_per_s=ceilings[bound], bound=bound)
    return out


def fleet(args, node: dict, nodes: int) -> dict:
    files = args.terabytes * 1e12 / (node["file_mb"] * 1e6)
    audio_hours = files * args.minutes_per_file / 60
    rate_node = node["files_per_s"]
    # Capacity missing while a lost node's replacement is allocated and pulls the image (not billed).
    available = 1 - args.interruptions_per_100 / 100 * args.replace_minutes / 60
    rate = min(nodes * rate_node * available, args.orchestrator_files_per_second)
    busy = rate / (nodes * rate_node * available)  # below 1 when the orchestrator caps the fleet
    hours = files / rate / 3600 + args.ramp_minutes / 60
    work_node_hours = files / rate_node / 3600 / busy
    # Each interruption redoes half a batch on average and pays a worker's start on the new node.
    batch_hours = args.batch_files / rate_node / 3600
    lost_per_interruption = batch_hours / 2 + args.restart_billed_s / 3600
    interruptions = work_node_hours * args.interruptions_per_100 / 100
    billed = work_node_hours + interruptions * lost_per_interruption
    read_tb = files * node["read_mb_per_file"] / 1e6
    row = {"nodes": nodes, "files": files, "audio_hours": audio_hours, "fleet_files_per_s": rate,
           "orchestrator_bound": rate >= args.orchestrator_files_per_second, "hours": hours,
           "node_hours": billed, "interruptions": interruptions, "redone_node_hours": billed - work_node_hours,
           "read_tb": read_tb, "egress_usd": read_tb * 1000 * args.egress_usd_per_gb,
           "audio_hours_per_node_hour": audio_hours / billed,
           "cost_usd": {label: billed * price for label, price in args.prices.items()}}
    return row


def table(args, node: dict, rows: list[dict]) -> str:
    c = node["ceilings"]
    head = [f"archive: {args.terabytes:g} TB of {args.minutes_per_file:g}-minute files at {args.bitrate_kbps:g} kbps "
            f"= {rows[0]['files'] / 1e6:.2f} M files, {rows[0]['audio_hours'] / 1e6:.2f} M audio hours",
            f"model {args.model} {args.compute_type}, {args.context:g} s windows, {args.windows_per_file:g} windows/file, "
            f"{args.recheck_fraction:.0%} rechecked at 30 s",
            f"windows/s: {node['windows_per_s']['short']:,.0f} ({args.context:g} s), {node['windows_per_s']['30s']:,.0f} "
            f"(30 s); {node['windows_source']}",
            f"node ceilings, files/s: GPU {c['gpu']:,.1f}, CPU {c['cpu']:,.1f} ({args.decode_threads} decode threads), "
            f"network {c['network']:,.2f} ({node['read_mb_per_file']:.1f} MB read per file at {args.download_mbps:g} Mbps)",
            f"files/s per node: {node['files_per_s']:,.2f} ({node['bound']}"
            + (" bound, ESTIMATE)" if node["bound"] != "measured" else ")"),
            f"interruptions: {args.interruptions_per_100:g} per 100 node-hours; a replacement is missing "
            f"{args.replace_minutes:g} min (not billed); each redoes half a batch of {args.batch_files} files and "
            f"{args.restart_billed_s:g} s of worker start (billed)", ""]
    labels = list(args.prices)
    header = (["nodes", "fleet files/s", "wall time", "node-hours", "interruptions", "redone node-h", "TB read",
               "audio h / node-h"] + [f"$ {label} ({args.prices[label]:g}/h)" for label in labels])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        wall = f"{r['hours']:.1f} h" if r["hours"] < 48 else f"{r['hours'] / 24:.1f} days"
        cells = [f"{r['nodes']}", f"{r['fleet_files_per_s']:,.0f}" + (" (orchestrator)" if r["orchestrator_bound"] else ""),
                 wall, f"{r['node_hours']:,.0f}", f"{r['interruptions']:,.0f}", f"{r['redone_node_hours']:,.1f}",
                 f"{r['read_tb']:,.1f}", f"{r['audio_hours_per_node_hour']:,.0f}"]
        cells += [f"{r['cost_usd'][label]:,.0f}" for label in labels]
        lines.append("| " + " | ".join(cells) + " |")
    if args.egress_usd_per_gb:
        lines.append(f"\negress at ${args.egress_usd_per_gb:g}/GB: " + ", ".join(
            f"{r['nodes']} nodes ${r['egress_usd']:,.0f}" for r in rows))
    return "\n".join(head + lines)


def parse_prices(text: str) -> dict[str, float]:
    prices = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, sep, price = item.rpartition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"bad price {item!r}; expected LABEL=USD_PER_HOUR")
        prices[label.strip()] = float(price)
    return prices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost_model", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--files-per-second", type=float, help="measured files/s of one node, end to end (default: the estimate)")
    add("--terabytes", type=float, default=300.0)
    add("--nodes", default="100,500", help="fleet sizes, comma-separated")
    add("--minutes-per-file", type=float, default=30.0)
    add("--bitrate-kbps", type=float, default=128.0)
    add("--prices", type=parse_prices, default=parse_prices(DEFAULT_PRICES), help="LABEL=USD per node-hour, ...")
    add("--model", choices=sorted(ARCHITECTURES), default="base")
    add("--compute-type", default="float16")
    add("--context", type=float, default=10.0, help="seconds per window (lid-dask's default)")
    add("--batch", type=int, default=32, help="windows per call (lid-dask's CUDA default)")
    add("--windows-per-file", type=float, default=2.33, help="model calls per file (auto:3x10 with the early stop)")
    add("--windows-read", type=int, default=3, help="windows decoded per file")
    add("--recheck-fraction", type=float, default=0.05, help="windows run again at 30 s (answered Latin)")
    add("--gpu", choices=sorted(GPU_TFLOPS), default="rtx-4090")
    add("--tflops", type=float, help="the GPU's dense FP16 tensor peak, instead of --gpu's")
    add("--efficiency", type=float, help="share of the GPU's FP16 peak reached (default per model: "
        + ", ".join(f"{k} {v:g}" for k, v in EFFICIENCY.items()) + ")")
    add("--gpu-check", help="a gpu_throughput.json whose windows/s replace the estimate")
    add("--gpu-scale", type=float, default=1.0, help="scale --gpu-check's windows/s to the fleet's GPU")
    add("--serial-cpu-s", type=float, default=0.015, help="CPU s per file in the task thread (log-mel)")
    add("--parallel-cpu-s", type=float, default=0.075, help="CPU s per file in decode threads (decoding, VAD)")
    add("--decode-threads", type=int, default=2, help="IdentifyConfig.decode_threads")
    add("--download-mbps", type=float, default=200.0)
    add("--read-block-mib", type=float, default=50.0, help="fsspec read-ahead block (s3fs default 50 MiB)")
    add("--interruptions-per-100", type=float, default=1.1, help="interruptions per 100 node-hours")
    add("--replace-minutes", type=float, default=20.0, help="minutes before a lost node's replacement works")
    add("--ramp-minutes", type=float, default=15.0, help="fleet start: full-fleet minutes lost while nodes come up")
    add("--restart-billed-s", type=float, default=60.0, help="billed seconds of a worker's start (model load, join)")
    add("--batch-files", type=int, default=32)
    add("--orchestrator-files-per-second", type=float, default=2000.0)
    add("--egress-usd-per-gb", type=float, default=0.0)
    add("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    nodes = [int(n) for n in args.nodes.split(",") if n]
    if min(nodes) < 1 or args.files_per_second is not None and args.files_per_second <= 0:
        parser.error("nodes and --files-per-second must be positive")

    node = per_node(args)
    rows = [fleet(args, node, n) for n in nodes]
    print(table(args, node, rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "node": node,
                                               "rows": rows}, indent=2, default=str))
    return 0 if all(math.isfinite(r["hours"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
