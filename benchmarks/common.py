"""Shared helpers for the benchmarks: manifest loading, sampling, label codes, timing, machine and
code state, waiting for a quiet machine, throw-away databases, results.

Every benchmark is a module of this package, run from the repository root as
``python -m benchmarks.<name>``; it imports what it shares from here (never from another
benchmark) and prints its figures and writes them under ``benchmarks/results/`` (or ``--out``).
Kept free of lid-dask internals beyond its public modules so that a benchmark measures what a
user gets. (``gpu_throughput`` alone imports nothing from here: it runs on a bare GPU machine.)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the repository root: `python -m benchmarks.<name>` runs from here
RESULTS = HERE / "results"
# Other benchmarks whose load would distort a measurement (pgrep -f; matches `python -m
# benchmarks.bench_accuracy_throughput` and a benchmark started from its file path alike).
BUSY_PATTERN = "bench_accuracy|bench_long|bench_memory|gpu_throughput|gpu_bench"


# -- manifest -----------------------------------------------------------------------------------

def load_manifest(path: str | os.PathLike, kind: str | None = None, split: str = "all",
                  engine: str | None = None) -> pd.DataFrame:
    """The manifest as a DataFrame with an absolute ``path`` column (``uri`` is relative to it)."""
    path = Path(path).resolve()
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    missing = {"uri", "language"} - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: manifest lacks column(s) {sorted(missing)}")
    df["path"] = [str((path.parent / u).resolve()) if "://" not in u else u for u in df["uri"]]
    for column, default in (("kind", "clip"), ("split", "dev"), ("engine", "?"), ("codec", "?"),
                            ("voice", "?"), ("prefix", "")):
        if column not in df.columns:
            df[column] = default
    df["duration_s"] = pd.to_numeric(df["duration_s"], errors="coerce") if "duration_s" in df.columns else float("nan")
    if kind:
        df = df[df["kind"] == kind]
    if split != "all":
        df = df[df["split"] == split]
    if engine:
        df = df[df["engine"] == engine]
    return df.reset_index(drop=True)


def stratified_limit(df: pd.DataFrame, limit: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `limit` rows: shared out between engines in proportion to their size (at least one
    each), and within an engine round-robin over languages in a seeded order, so that a small
    sample still covers every language it can. Deterministic for a given manifest and seed."""
    if not limit or limit >= len(df):
        return df
    rng = random.Random(seed)
    counts = df["engine"].value_counts().sort_index()
    quota = {e: max(1, round(limit * n / len(df))) for e, n in counts.items()}
    while sum(quota.values()) > limit:  # rounding overshoot: trim the largest share
        biggest = max(quota, key=quota.get)
        quota[biggest] -= 1
    picked: list[int] = []
    for engine, share in quota.items():
        groups = {lang: list(g.index) for lang, g in df[df["engine"] == engine].groupby("language", sort=True)}
        for members in groups.values():
            rng.shuffle(members)
        order = sorted(groups)
        rng.shuffle(order)
        while share > 0 and any(groups.values()):
            for lang in order:
                if share > 0 and groups[lang]:
                    picked.append(groups[lang].pop())
                    share -= 1
    return df.loc[sorted(picked)].reset_index(drop=True)


# -- languages ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def base_code(label: str | None) -> str | None:
    """Label or prediction -> base language through lid_dask.languages (``jw`` -> ``jv``);
    None for no label and for ``und`` (undetermined is no answer)."""
    if label is None or (isinstance(label, float)) or str(label).strip() in ("", "und"):
        return None
    from lid_dask.languages import base_language, to_code

    try:
        return base_language(to_code(str(label)))
    except ValueError:
        return None


@functools.lru_cache(maxsize=1)
def whisper_languages() -> frozenset[str]:
    """Base languages the bundled Whisper can answer at all (its 99 language tokens)."""
    import tokenizers

    from lid_dask.models.bundled import bundled_model_dir

    folder = bundled_model_dir()
    config = json.loads((folder / "config.json").read_text())
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    return frozenset(filter(None, (base_code(tok.id_to_token(i)) for i in config["lang_ids"])))


# -- timing -------------------------------------------------------------------------------------

class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def warm_page_cache(paths: Iterable[str]) -> int:
    """Read every file once so that no method pays (or is spared) the first disk read."""
    total = 0
    for p in paths:
        if "://" in p:
            continue
        with open(p, "rb") as handle:
            while block := handle.read(1 << 22):
                total += len(block)
    return total


# -- machine and versions -----------------------------------------------------------------------

def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def code_state() -> dict:
    """Which engine was measured: git commit, whether the tree is dirty, and a hash of lid_dask/."""
    import hashlib

    state = {}
    try:
        state["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                      text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256()
    for path in sorted((ROOT / "lid_dask").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    state["lid_dask_sha256"] = digest.hexdigest()[:16]
    return state


def code_label() -> str:
    """The lid_dask code measured, in one string: the commit, plus a digest of uncommitted changes
    to lid_dask/**.py (``0654788`` or ``0654788+dirty:1a2b3c4d``); "unknown" outside git."""
    import hashlib

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "lid_dask/*.py"], cwd=ROOT, capture_output=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f"+dirty:{hashlib.sha256(diff).hexdigest()[:8]}" if diff else "")


def command_line() -> str:
    """How this process was started, as one reruns it: ``python -m benchmarks.<name> --option ...``."""
    import shlex

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None and spec.name else f"python {sys.argv[0]}"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import ctranslate2

        gpus = ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001
        gpus = None
    mem_gib = None
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "cuda_gpus": gpus,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "versions": {n: _version(n) for n in ("lid-dask", "ctranslate2", "faster-whisper", "av", "numpy",
                                               "onnxruntime", "librosa", "soxr", "psutil")},
        "code": code_state(),
        "command": command_line(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "CT2_USE_MKL", "OPENBLAS_CORETYPE") if k in os.environ},
    }


def machine_line(info: dict) -> str:
    gpu = "no GPU" if not info.get("cuda_gpus") else f"{info['cuda_gpus']} GPU(s)"
    return (f"{info['date']} | {info['cpu']} | {info['cores']} cores | {info['memory_gib']} GiB | {gpu} | "
            f"load {info['load_avg_at_start']} | ctranslate2 {info['versions'].get('ctranslate2')} | "
            f"faster-whisper {info['versions'].get('faster-whisper')} | lid-dask {info.get('code', {}).get('git', '?')} "
            f"(lid_dask/ sha {info.get('code', {}).get('lid_dask_sha256', '?')})")


def wait_for_quiet_machine(pattern: str = BUSY_PATTERN, poll: float = 30.0, limit: float = 3600.0,
                           max_load: float = 1.5, load_wait: float = 120.0) -> None:
    """Other benchmarks on this 2-core machine would distort the figures: wait until none runs
    (pgrep `pattern`, every `poll` s), then up to `load_wait` s for the 1-minute load to fall
    below `max_load` (other work, e.g. a data set being synthesised); then go on regardless."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        found = [p for p in found if int(p) != os.getpid()]
        if not found:
            break
        print(f"waiting: other benchmark(s) running (pids {' '.join(found)}); next check in {poll:.0f} s",
              file=sys.stderr, flush=True)
        time.sleep(poll)
    else:
        print("WARNING: gave up waiting for other benchmarks; figures may be low", file=sys.stderr)
    start = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - start < load_wait:
        print(f"waiting: load average {os.getloadavg()[0]:.2f} > {max_load}; next check in {poll:.0f} s",
              file=sys.stderr, flush=True)
        time.sleep(poll)
    if os.getloadavg()[0] > max_load:
        print(f"WARNING: load average {os.getloadavg()[0]:.2f}: another process is busy, figures may be low",
              file=sys.stderr)


def check_quiet_machine(threshold: float = 0.7) -> None:
    """Warn when something else is using the CPU: timings on 2 cores are then meaningless."""
    load1 = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load1 > threshold * cores:
        print(f"WARNING: 1-minute load average is {load1:.2f} on {cores} cores: another process is busy, "
              "timings will be low", file=sys.stderr)


# -- databases ----------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(kind: str, pg_base: str, tag: str, keep: bool = False):
    """A SQLAlchemy URL of an empty database; dropped (or deleted) afterwards unless `keep`.
    `kind` is "sqlite" or "postgresql" (`pg_base`: the server's URL without a database name).
    SQLite files go under ``$LID_BENCH_TMP`` when set (a ledger of millions of files needs room)."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"lid-bench-{tag}-", dir=os.environ.get("LID_BENCH_TMP"))
        try:
            yield f"sqlite:///{folder}/ledger.db"
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"lid_bench_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = pg_base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_base}/{name}"
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- output -------------------------------------------------------------------------------------

def write_results(name: str, payload: dict, markdown: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def md_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = "{:.3g}") -> str:
    if not rows:
        return "(none)\n"
    columns = columns or list(rows[0])

    def cell(v):
        if v is None or (isinstance(v, float) and v != v):
            return "–"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.1f}%"
