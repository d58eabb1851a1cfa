"""Every benchmark's main path on tiny input: it runs as `python -m benchmarks.<name>` from the
repository root, prints its figures and writes its result file with sane fields (to tmp_path,
never to benchmarks/results/). Figures are not checked against any target: on a few files and a
shared machine they mean nothing; that the code path runs end to end is the point."""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from .conftest import ROOT, run_module

BENCHMARKS = ROOT / "benchmarks"
# Every runnable module of benchmarks/, each with a smoke test below.
MODULES = ["bench_accuracy_throughput", "bench_cluster_e2e", "bench_evaluation_scale", "bench_ledger_scale",
           "bench_long_files", "bench_memory", "bench_orchestration", "cost_model", "gpu_throughput", "monitor_overhead",
           "record_evaluation"]


def test_every_benchmark_module_is_listed_here():
    found = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem not in ("__init__", "common"))
    assert found == sorted(MODULES), "a new benchmark needs a smoke test in tests/benchmarks/test_smoke.py"


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_no_sys_path_edits_nor_imports_between_benchmarks(path):
    """No sys.path edits, no imports from a sibling benchmark: what they share is in common.py."""
    tree = ast.parse(path.read_text(), filename=str(path))
    stems = {p.stem for p in BENCHMARKS.glob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            pytest.fail(f"{path.name}:{node.lineno} touches sys.path")
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            qualified = name.startswith(("benchmarks.", "."))
            first = name.removeprefix("benchmarks.").lstrip(".").split(".")[0]
            if first in stems and (first != "common" or not qualified):
                pytest.fail(f"{path.name}:{node.lineno} imports {name}: share it through benchmarks.common")


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_answers_help(module):
    done = run_module(f"benchmarks.{module}", "--help", timeout=120)
    assert f"python -m benchmarks.{module}" in done.stdout


# -- engine benchmarks (benchmarks/README.md) ---------------------------------------------------

def test_accuracy_throughput(tiny_synth, tmp_path):
    done = run_module("benchmarks.bench_accuracy_throughput", "--manifest", str(tiny_synth), "--limit", "3",
                      "--methods", "lid-dask,fw-int8", "--block", "2", "--tag", "smoke", "--out", str(tmp_path))
    assert "== lid-dask:" in done.stdout and "files/s" in done.stdout and "== ratios" in done.stdout
    result = json.loads((tmp_path / "accuracy_throughput_smoke.json").read_text())
    assert result["files"] == 3
    assert result["machine"]["command"].startswith("python -m benchmarks.bench_accuracy_throughput")
    for method in ("lid-dask", "fw-int8"):
        figures = result["methods"][method]
        assert figures["files_per_s"] > 0 and figures["cpu_s_per_file"] > 0
        assert 0 <= figures["overall"]["accuracy"] <= 1 and figures["overall"]["n"] == 3
    assert result["ratios"]["lid-dask vs fw-int8"]["speed_ratio"] > 0
    assert result["stages"]["model_s"] > 0
    assert "## Speed and accuracy" in (tmp_path / "accuracy_throughput_smoke.md").read_text()
    with (tmp_path / "accuracy_throughput_smoke_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all("lid-dask.pred" in row for row in rows)


def test_long_files(tiny_synth, tmp_path):
    done = run_module("benchmarks.bench_long_files", "--manifest", str(tiny_synth), "--repeats", "1",
                      "--formats", "mp3", "--out", str(tmp_path))
    assert "== summary" in done.stdout and "decode ratio" in done.stdout
    result = json.loads((tmp_path / "long_files.json").read_text())
    summary = result["summary"]
    assert summary["files"] == 1
    assert summary["decode_ratio_median"] > 0 and summary["e2e_ratio_vs_librosa_median"] > 0
    assert [row["format"] for row in result["decode_by_format"]] == ["ogg", "mp3"]
    (row,) = result["files"]
    assert row["lid_s"] > 0 and row["full_decode_s"] > 0 and row["lid_language"]
    assert (tmp_path / "long_files.md").read_text().startswith("# Long files")


def test_memory(tiny_synth, tmp_path):
    done = run_module("benchmarks.bench_memory", "--manifest", str(tiny_synth), "--n", "2",
                      "--configs", "numpy,lid-dask", "--out", str(tmp_path))
    assert "peak" in done.stdout and "MiB" in done.stdout
    result = json.loads((tmp_path / "memory.json").read_text())
    by = {r["config"]: r for r in result["results"]}
    assert set(by) == {"numpy", "lid-dask"} and not any("error" in r for r in by.values())
    assert 0 < by["numpy"]["peak_mib"] < by["lid-dask"]["peak_mib"]
    assert by["lid-dask"]["files"] == 2
    assert result["args"]["n"] == "2"


def test_gpu_check_cpu_smoke(tmp_path):
    """`gpu_check.sh --cpu-smoke`: every step but the CUDA calls. A carry (as gpu_prepare.sh packs it:
    part of the image's lock and a site folder) is unpacked and checked against the lock;
    gpu_throughput builds and times random-weight Whispers (a tiny one and base) on CPU; a lid-dask
    run goes end to end through a SQLite ledger on a local cluster; the dask-cuda check fails
    without a GPU, as it says."""
    carry, site = tmp_path / "carry", tmp_path / "site"
    run_module("benchmarks.gpu_throughput", "--lock-subset", "locket", "--lock", "requirements/image.lock",
               "--out", str(carry / "carry.lock"))
    (site / "locket-1.0.0.dist-info").mkdir(parents=True)
    (site / "locket-1.0.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: locket\nVersion: 1.0.0\n")
    with tarfile.open(carry / "site.tar.xz", "w:xz") as tar:
        tar.add(site, arcname="site")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORKDIR": str(tmp_path / "models"), "CARRY": str(carry),
           "SITE": str(tmp_path / "unpacked")}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu-smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "windows/s" in done.stdout and "throughput rc=0, e2e rc=0" in done.stdout
    assert "================ summary" in done.stdout and "unpacked the carried part of the lock" in done.stdout
    lock = json.loads((tmp_path / "out" / "lock_check.json").read_text())
    assert lock["ok"] and lock["carried_from_lock"] == ["locket"] and lock["packages"] > 50
    assert "--hash=sha256:" in (tmp_path / "out" / "carry-smoke.lock").read_text()
    result = json.loads((tmp_path / "out" / "gpu_throughput_cpu_smoke.json").read_text())
    assert result["device"] == "cpu"
    assert {row["model"] for row in result["rows"]} == {"tiny-test", "base"}
    assert all("error" not in row and row["windows_per_s"] > 0 and row["files_per_s"] > 0 for row in result["rows"])
    e2e = json.loads((tmp_path / "out" / "e2e_cpu_smoke.json").read_text())
    assert e2e["ok"] and e2e["cluster"] == "LocalCluster" and e2e["counts"]["done"] == e2e["files"] == e2e["answered"]
    assert json.loads((tmp_path / "out" / "dask_cuda_check.json").read_text())["ok"] is False


def test_cost_model(tmp_path):
    """The estimate (no figures given), a measured pace, and windows/s from a gpu_check result."""
    done = run_module("benchmarks.cost_model", "--json", str(tmp_path / "estimate.json"))
    assert "ESTIMATE" in done.stdout and "| 100 |" in done.stdout and "| 500 |" in done.stdout
    estimate = json.loads((tmp_path / "estimate.json").read_text())
    small, large = estimate["rows"]
    assert round(small["files"]) == round(large["files"]) > 1e6 and small["hours"] > large["hours"] > 0
    assert all(cost > 0 for row in estimate["rows"] for cost in row["cost_usd"].values())
    assert estimate["node"]["bound"] in {"gpu", "cpu", "network"}
    run_module("benchmarks.cost_model", "--files-per-second", "5", "--nodes", "10", "--json", str(tmp_path / "m.json"))
    measured = json.loads((tmp_path / "m.json").read_text())
    assert measured["node"]["bound"] == "measured" and measured["rows"][0]["fleet_files_per_s"] < 50
    check = {"rows": [{"model": "base", "compute_type": "float16", "batch": b, "context_s": c, "windows_per_s": w}
                      for b, c, w in ((8, 10.0, 500.0), (32, 10.0, 900.0), (32, 30.0, 300.0), (64, 10.0, 5000.0))]}
    (tmp_path / "gpu_throughput.json").write_text(json.dumps(check))
    done = run_module("benchmarks.cost_model", "--gpu-check", str(tmp_path / "gpu_throughput.json"), "--gpu-scale",
                      "0.5", "--read-block-mib", "1", "--json", str(tmp_path / "g.json"))
    node = json.loads((tmp_path / "g.json").read_text())["node"]
    assert node["windows_source"].startswith("measured") and node["windows_per_s"] == {"short": 450.0, "30s": 150.0}


# -- distributed benchmarks (benchmarks/DISTRIBUTED.md) -----------------------------------------

def test_orchestration(tmp_path):
    out = tmp_path / "orchestration.json"
    done = run_module("benchmarks.bench_orchestration", "--files", "300", "--batch-sizes", "100",
                      "--dbs", "sqlite,postgresql", "--workers", "1", "--no-wait", "--out", str(out))
    assert "files/s" in done.stdout and "check ok" in done.stdout
    result = json.loads(out.read_text())
    assert result["meta"]["command"].startswith("python -m benchmarks.bench_orchestration")
    assert [r["db"] for r in result["results"]] == ["sqlite", "postgresql"]
    for r in result["results"]:
        assert r["verify"]["ok"] and r["files"] == 300 and r["process_files_per_s"] > 0
        assert r["breakdown_s"]["ledger.record"] > 0


def test_ledger_scale(tmp_path):
    out = tmp_path / "ledger_scale.json"
    done = run_module("benchmarks.bench_ledger_scale", "--files", "2000", "--dbs", "sqlite,postgresql",
                      "--repeat", "3", "--no-wait", "--out", str(out))
    assert "claim(256)" in done.stdout and "agrees with a GROUP BY" in done.stdout
    result = json.loads(out.read_text())
    assert [r["db"] for r in result["results"]] == ["sqlite", "postgresql"]
    for r in result["results"]:
        assert r["load_rows_per_s"] > 0 and all(r["agrees_with_group_by"].values())
        assert {"claim(256)", "record(256)", "counts", "Run.status()"} <= set(r["timings"])
        assert all(t["median_ms"] > 0 for t in r["timings"].values())


def test_evaluation_scale(tmp_path):
    out = tmp_path / "evaluation_scale.json"
    done = run_module("benchmarks.bench_evaluation_scale", "--rows", "2000", "--chunk", "1000", "--out", str(out))
    assert "rows_per_s" in done.stdout
    result = json.loads(out.read_text())
    assert result["rows"] == 2000 and result["partitions"] == 2
    assert result["evaluate_s"] >= 0 and result["peak_rss_mib"] > 0 and 0 <= result["accuracy"] <= 1


def test_monitor_overhead(tmp_path):
    """One (plain, monitor) pair of long-lived schedulers, one worker, 300 null-backend files."""
    done = run_module("benchmarks.monitor_overhead", "--files", "300", "--pairs", "1", "--warmup-files", "40",
                      "--batch-files", "20", "--db", "sqlite", "--workers", "1", "--no-wait", "--out", str(tmp_path))
    assert "per 10,000 results" in done.stdout and "monitor / plain" in done.stdout
    result = json.loads((tmp_path / "monitor_overhead.json").read_text())
    assert result["meta"]["machine"]["command"].startswith("python -m benchmarks.monitor_overhead")
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"plain", "monitor"} and not any(r["problems"] for r in runs.values())
    for r in runs.values():
        assert r["done"] == 300 and r["files_per_s"] > 0 and r["scheduler_cpu_s"] > 0 and r["rss_after_mib"] > 0
    assert runs["monitor"]["monitor_counted"] == 300 and runs["monitor"]["report_calls"] > 0
    assert runs["plain"]["report_calls"] == 0 and not runs["plain"]["events"]["monitor_plugin"]
    assert result["summary"]["ratio_monitor_over_plain"]["wall_s"]["median"] > 0
    assert (tmp_path / "monitor_overhead.txt").read_text().startswith("lid_dask.monitor overhead")


def test_cluster_e2e(tiny_synth, tmp_path):
    out = tmp_path / "cluster_e2e.json"
    done = run_module("benchmarks.bench_cluster_e2e", "--manifest", str(tiny_synth), "--limit", "4",
                      "--workers", "1", "--batch-files", "2", "--no-wait", "--out", str(out))
    assert "faster-whisper loop:" in done.stdout and "files/s" in done.stdout
    result = json.loads(out.read_text())
    assert result["meta"]["files"] == 4 and result["meta"]["source"] == "requested"
    methods = {m["method"]: m for m in result["methods"]}
    assert {"faster-whisper loop (1 process)", "lid-dask in-process (Identifier)",
            "lid-dask 1 worker, batch 2"} == set(methods)
    assert all(m["files_per_s"] > 0 and 0 <= m["score"]["accuracy"] <= 1 for m in methods.values())
    assert methods["lid-dask 1 worker, batch 2"]["counts"]["done"] == 4
    with (tmp_path / "cluster_e2e_predictions.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_record_evaluation(tiny_synth, tmp_path):
    """An entry next to a copy of the committed one, so that the comparison with the previous
    entry runs too."""
    committed = sorted(p for p in (BENCHMARKS / "evaluations").iterdir() if (p / "evaluation.json").is_file())[0]
    (tmp_path / committed.name).mkdir()
    shutil.copy(committed / "evaluation.json", tmp_path / committed.name / "evaluation.json")
    name = committed.name[:10] + "-zz-smoke"  # sorts after the committed entry
    done = run_module("benchmarks.record_evaluation", "--manifest", str(tiny_synth), "--name", name,
                      "--into", str(tmp_path))
    assert '"accuracy"' in done.stdout
    entry = tmp_path / name
    summary = json.loads((entry / "summary.json").read_text())
    assert {"all", "engine=festival", "engine=espeak-ng", "kind=long"} <= set(summary["parts"])
    assert summary["parts"]["all"]["consensus"]["n"] == 6
    assert (entry / "evaluation.json").is_file() and (entry / "report" / "report.md").is_file()
