"""A local cluster with lid-dask's monitor, a ledger, and a real Prometheus (Debian's package)
scraping the cluster's scheduler, all on loopback and shared by a test module.

Prometheus runs cluster/monitoring/prometheus.yml with a 1 s scrape and evaluation interval, the
local scheduler as its target, and alerts.yml with every ``for:`` cut to 2 s, so alerts fire
within a test's time; the rules are otherwise the shipped ones.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import yaml


from ..conftest import free_port, fresh_pg_database, need
from .promql import ALERTS, MONITORING

TEST_FOR = "2s"


@pytest.fixture(scope="module")
def ledger_url():
    """A fresh PostgreSQL database for the module, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen

    def get(self, path: str, **params) -> object:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple, float]:
        """Instant vector at now: {sorted label items without __name__: value}."""
        data = self.get("/api/v1/query", query=expr)
        return {_key(r["metric"]): float(r["value"][1]) for r in data["result"]}

    def query_range(self, expr: str, start: float, end: float | None = None) -> dict[tuple, list[float]]:
        data = self.get("/api/v1/query_range", query=expr, start=start, end=end or time.time(), step="1s")
        return {_key(r["metric"]): [float(v) for _, v in r["values"]] for r in data["result"]}

    def wait_for(self, expr: str, expected: float, timeout: float = 60) -> None:
        """Until `expr` (one series) reads `expected`: the last scrape has the final figures."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.query(expr)
            if len(seen) == 1 and math.isclose(next(iter(seen.values())), expected):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{expr} read {seen}, not {expected}, for {timeout} s")

    def alerts(self) -> list[dict]:
        return self.get("/api/v1/alerts")["alerts"]


def _key(metric: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def shortened_rules() -> tuple[str, int]:
    """alerts.yml with every ``for:`` cut to `TEST_FOR`, and how many were cut."""
    return re.subn(r"(?m)^(\s+for: )\d+m$", rf"\g<1>{TEST_FOR}", ALERTS.read_text())


@pytest.fixture(scope="module")
def prometheus(monitored_client, tmp_path_factory) -> PrometheusServer:
    need("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    rules, cut = shortened_rules()
    assert cut == ALERTS.read_text().count("\n        for: ")  # every alert's duration, and nothing else
    (folder / "alerts.yml").write_text(rules)
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(folder / "alerts.yml")]
    (job,) = config["scrape_configs"]
    scheduler = urllib.parse.urlsplit(monitored_client.dashboard_link).netloc
    job["static_configs"] = [{"targets": [scheduler]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(folder / "prometheus.log", "w")
    process = subprocess.Popen(["prometheus", f"--config.file={folder / 'prometheus.yml'}",
                                f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and the scheduler scraped once
            assert process.poll() is None, (folder / "prometheus.log").read_text()
            try:
                if server.query(f'up{{job="{job["job_name"]}"}}') == {(("instance", scheduler),
                                                                       ("job", job["job_name"])): 1.0}:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (folder / "prometheus.log").read_text()
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
