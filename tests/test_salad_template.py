"""cluster/salad/: the container-group template fits SaladCloud's API and lid-dask's own commands,
and fill.py turns it, with real certificates from `lid-dask certs`, into a request the API takes
and whose TLS material `lid-dask worker` reads back."""

from __future__ import annotations

import importlib.util
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from lid_dask import cli
from lid_dask.tls import ENV_VARIABLES, make_certificates, role_files

ROOT = Path(__file__).resolve().parents[1]
SALAD = ROOT / "cluster" / "salad"
FILL = SALAD / "fill.py"
LID_DASK = str(Path(sys.executable).with_name("lid-dask"))


def load_fill():
    spec = importlib.util.spec_from_file_location("salad_fill", FILL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads((SALAD / "container-group.json").read_text())


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    make_certificates(folder, ["scheduler.example.org"])
    return folder


def fill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FILL), *args], capture_output=True, text=True, timeout=60)


def test_template_fits_the_api(template):
    assert load_fill().problems(template, placeholders=True) == []
    assert load_fill().problems(template)  # but it is a template: placeholders are left to fill in
    assert fill("--check").returncode == 0


def test_template_runs_lid_dask_commands(template):
    """The container's command and both probes are lid-dask commands as its parser reads them; the
    variables are the ones `lid-dask worker` reads."""
    container = template["container"]
    assert container["command"][0] == "lid-dask"
    assert cli.parser().parse_args(container["command"][1:]).handler.__name__ == "worker_command"
    for probe in ("startup_probe", "liveness_probe"):
        argv = template[probe]["exec"]["command"]
        assert argv[0] == "lid-dask" and cli.parser().parse_args(argv[1:]).handler.__name__ == "health_command"
    variables = container["environment_variables"]
    assert set(ENV_VARIABLES) <= set(variables) and "LID_DASK_SCHEDULER" in variables
    worker_help = subprocess.run([LID_DASK, "worker", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "$LID_DASK_SCHEDULER" in worker_help and "$SALAD_MACHINE_ID" in worker_help
    assert "networking" not in template  # workers take no inbound connections: no Container Gateway


def test_health_probe_fails_without_a_worker(tmp_path):
    done = subprocess.run([LID_DASK, "health"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LID_DASK_HEALTH_DIR": str(tmp_path)})
    assert done.returncode == 1 and done.stderr.strip()


def test_filled_request_carries_certificates_the_worker_reads(template, certs, monkeypatch):
    done = fill("--certs", str(certs), "--image", "ghcr.io/acme/lid-dask@sha256:" + "0" * 64,
                "--scheduler", "tls://scheduler.example.org:8786", "--replicas", "500", "--priority", "low",
                "--env", 'LID_DASK_STORAGE_OPTIONS={"key": "AKIA", "secret": "s3cr3t"}')
    assert done.returncode == 0, done.stderr
    group = json.loads(done.stdout)
    assert load_fill().problems(group) == []
    assert group["replicas"] == 500 and group["container"]["priority"] == "low"
    variables = group["container"]["environment_variables"]
    assert json.loads(variables["LID_DASK_STORAGE_OPTIONS"]) == {"key": "AKIA", "secret": "s3cr3t"}
    for name in ENV_VARIABLES:  # one line of at most 1000 characters, as SaladCloud takes them
        assert "\n" not in variables[name] and len(variables[name]) <= 1000
        monkeypatch.setenv(name, variables[name])
    with role_files("worker", None) as (ca, cert, key):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        assert cert.read_text() == (certs / "worker.pem").read_text()


def test_fill_refuses_what_the_api_would(certs):
    done = fill("--certs", str(certs), "--scheduler", "tls://scheduler.example.org:8786")
    assert done.returncode == 1 and "container.image: still a placeholder" in done.stderr and not done.stdout
    done = fill("--certs", str(certs), "--image", "ghcr.io/acme/lid-dask:1", "--replicas", "501",
                "--env", "TOO_LONG=" + "x" * 1001)
    assert done.returncode == 1
    assert "replicas: 0 to 500" in done.stderr and "TOO_LONG: one line of 1-1000 characters (it has 1001)" in done.stderr
