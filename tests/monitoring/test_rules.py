"""The alerting rules and the scrape config as Prometheus's own tool reads them.

promtool checks both files and runs alerts_test.yml; then the same unit tests run against copies of
the rules with one threshold, duration or guard changed, and must fail: each "stays quiet" case of
alerts_test.yml stands for a guard, and a rule loosened by mistake shows.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from lid_dask.figures import DRIFT, WATCH

from ..conftest import need
from .promql import ALERTS, MONITORING


def promtool(*args: str, cwd=MONITORING) -> subprocess.CompletedProcess:
    need("promtool")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules_and_the_scrape_config():
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 14 rules found" in rules.stdout  # 7 recorded series, 7 alerts
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout
    (job,) = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"]
    assert f'up{{job="{job["job_name"]}"}}' in ALERTS.read_text()  # LidDaskMetricsDown watches this job


def test_each_alert_fires_and_stays_quiet_as_alerts_test_says():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {line.split(":", 1)[1].strip() for line in (MONITORING / "alerts_test.yml").read_text().splitlines()
              if line.strip().startswith("alertname:")}
    alerts = {line.split(":", 1)[1].strip() for line in ALERTS.read_text().splitlines()
              if line.strip().startswith("- alert:")}
    assert tested == alerts


def test_the_drift_alerts_read_psi_as_lid_dask_does():
    text = ALERTS.read_text()
    assert f"expr: lid_dask_drift_psi > {DRIFT}\n" in text
    assert f"expr: lid_dask_drift_psi > {WATCH} and lid_dask_drift_psi <= {DRIFT}\n" in text


# (what changes, the text in alerts.yml, what it becomes)
LOOSENED = [
    ("drift threshold", "expr: lid_dask_drift_psi > 0.25", "expr: lid_dask_drift_psi > 0.5"),
    ("drift duration", "        for: 10m\n", "        for: 3m\n"),
    ("watch without its upper bound", "lid_dask_drift_psi > 0.1 and lid_dask_drift_psi <= 0.25",
     "lid_dask_drift_psi > 0.1"),
    ("watch duration", "        for: 30m\n", "        for: 5m\n"),
    ("review: not double", "run:lid_dask_review:ratio10m > 2 * run:lid_dask_review:ratio1h_offset10m\n          and ",
     ""),
    ("review: not 10 points", "and run:lid_dask_review:ratio10m - run:lid_dask_review:ratio1h_offset10m > 0.1\n"
     "          ", ""),
    ("review: few recent files", "and run:lid_dask_files_answered:increase10m >= 100\n          ", ""),
    ("review: few earlier files", "\n          and run:lid_dask_files_answered:increase1h_offset10m >= 100", ""),
    ("errors: under 5%", "run_kind:lid_dask_errors:ratio10m > 0.05\n          and ", ""),
    ("errors: not three times", "and run_kind:lid_dask_errors:ratio10m\n            > 3 * "
     "(run_kind:lid_dask_errors:ratio1h_offset10m >= 0 or 0 * run_kind:lid_dask_errors:ratio10m)\n          ", ""),
    ("errors: a new class not counted as 0 before", " or 0 * run_kind:lid_dask_errors:ratio10m", ""),
    ("errors: under 10 files", "\n          and run_kind:lid_dask_errors:increase10m >= 10", ""),
    ("no progress: files remaining", "lid_dask_files_remaining > 0\n          and on (job, instance, run) ", ""),
    ("no progress: a stopped run", "lid_dask_run_active == 1\n          and on (job, instance, run) ", ""),
    ("no progress: 10 minutes", "lid_dask_last_record_timestamp_seconds > 900",
     "lid_dask_last_record_timestamp_seconds > 600"),
    ("drifted workers", "expr: lid_dask_drifted_workers > 0", "expr: lid_dask_drifted_workers > 1"),
    ("metrics down: another job", 'expr: up{job="lid-dask-scheduler"} == 0', 'expr: up{job="lid-dask"} == 0'),
]


@pytest.mark.parametrize("what, old, new", LOOSENED, ids=[case[0] for case in LOOSENED])
def test_alerts_test_fails_on_rules_changed(what, old, new, tmp_path):
    rules = ALERTS.read_text()
    assert rules.count(old) == 1, f"{what}: the rule text moved; update LOOSENED"
    (tmp_path / "alerts.yml").write_text(rules.replace(old, new))
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path)
    assert promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode == 0, what  # still valid rules
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"alerts_test.yml passes with {what} changed"
