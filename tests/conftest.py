"""Shared fixtures: real audio made with espeak-ng, sox and ffmpeg (deterministic flags)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub: everything they load is built or bundled locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCE_EN = ("The weather was fine this morning, so we walked along the river to the old market "
               "and bought fresh bread, cheese and apples for the journey.")
SENTENCE_DE = ("Heute Morgen war das Wetter schön, deshalb sind wir am Fluss entlang zum alten Markt "
               "gegangen und haben frisches Brot und Käse gekauft.")

# container extension -> ffmpeg arguments (bit-exact where the codec allows)
CODECS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    "opus": ["-c:a", "libopus", "-b:a", "24k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
}
BITEXACT = ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def ffmpeg(*args: str) -> None:
    run("ffmpeg", "-loglevel", "error", "-y", "-nostdin", *args)


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required by the tests; install it (see .ci/run)")


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    """English and German speech (espeak-ng), at 22.05 kHz wav, plus derived files."""
    for tool in ("espeak-ng", "ffmpeg", "sox"):
        need(tool)
    out = tmp_path_factory.mktemp("audio")
    run("espeak-ng", "-v", "en", "-w", str(out / "en.wav"), SENTENCE_EN)
    run("espeak-ng", "-v", "de", "-w", str(out / "de.wav"), SENTENCE_DE)
    return out


@pytest.fixture(scope="session")
def speech_en(audio_dir) -> Path:
    return audio_dir / "en.wav"


@pytest.fixture(scope="session")
def encoded(audio_dir, speech_en) -> dict[str, Path]:
    """The English sentence in every supported container/codec, stereo at 44.1 kHz."""
    files = {}
    for ext, codec in CODECS.items():
        path = audio_dir / f"en_stereo.{ext}"
        ffmpeg("-i", str(speech_en), "-ac", "2", "-ar", "44100" if ext not in ("opus", "webm") else "48000",
               *codec, *BITEXACT, str(path))
        files[ext] = path
    video = audio_dir / "en_video.mp4"  # the audio track of a video file
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=5", "-i", str(speech_en), "-shortest",
           "-c:v", "mpeg4", "-c:a", "aac", *BITEXACT, str(video))
    files["mp4-video"] = video
    mkv = audio_dir / "en_video.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=5", "-i", str(speech_en), "-shortest",
           "-c:v", "mpeg4", "-c:a", "libvorbis", *BITEXACT, str(mkv))
    files["mkv-video"] = mkv
    return files


@pytest.fixture(scope="session")
def long_wav(audio_dir, speech_en) -> Path:
    """About ten minutes: 60 s of silence, then the English sentence repeated (16 kHz wav)."""
    wav16 = audio_dir / "en16.wav"
    run("sox", "-R", "-D", str(speech_en), "-r", "16000", str(wav16))
    long_wav = audio_dir / "long.wav"
    run("sox", "-R", "-D", "-n", "-r", "16000", "-c", "1", str(audio_dir / "silence60.wav"), "trim", "0", "60")
    repeated = audio_dir / "repeated.wav"
    run("sox", "-R", "-D", str(wav16), str(repeated), "repeat", "100")
    run("sox", "-R", "-D", str(audio_dir / "silence60.wav"), str(repeated), str(long_wav))
    return long_wav


@pytest.fixture(scope="session")
def long_file(audio_dir, long_wav) -> Path:
    """The ten-minute file as mp3."""
    path = audio_dir / "long.mp3"
    ffmpeg("-i", str(long_wav), "-c:a", "libmp3lame", "-b:a", "48k", *BITEXACT, str(path))
    return path


@pytest.fixture(scope="session")
def long_vorbis(audio_dir, long_wav) -> Path:
    """The ten-minute file as Ogg/Vorbis at 22.05 kHz: many small frames, resampled on decoding."""
    path = audio_dir / "long.ogg"
    ffmpeg("-i", str(long_wav), "-ar", "22050", *CODECS["ogg"], *BITEXACT, str(path))
    return path


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "lid_dask" / "samples"


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_pg_database():
    """A fresh PostgreSQL database on the local server (its URL), dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"lid_dask_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url():
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def monitored_client():
    """A local cluster (one worker with the test backends) whose scheduler runs lid_dask.monitor."""
    from lid_dask.cluster import cluster_client

    with cluster_client(n_workers=1, dashboard_address="127.0.0.1:0", preload=("tests.fault_plugins",)) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each ledger test runs on SQLite (the laptop default) and PostgreSQL (clusters)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """An environment where botocore finds no credentials, and never asks a metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3(encoded):
    """A bucket on a real S3 API server (moto, loopback only) holding two clips."""
    from moto.server import ThreadedMotoServer
    import s3fs

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("clips")
    fs.put(str(encoded["mp3"]), "clips/talk/en.mp3")
    fs.put(str(encoded["opus"]), "clips/talk/en.opus")
    yield options
    server.stop()


ROOT = Path(__file__).resolve().parents[1]


def start_long_lived_cluster(workers: int = 1, preloads: tuple[str, ...] = ("tests.fault_plugins",),
                             env: dict | None = None, scheduler_preloads: tuple[str, ...] = (),
                             log_dir: Path | None = None):
    """`dask scheduler` and `dask worker` processes as the deployment runs them (cluster/), on
    loopback: they outlive the orchestrators that use them. Returns (address, processes).
    With `log_dir`, their output goes to scheduler.log and worker-N.log there."""
    port = free_port()
    environment = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1", "OMP_NUM_THREADS": "2",
                   "PYTHONPATH": str(ROOT), **(env or {})}  # PYTHONPATH: the test plug-ins are importable
    bin_dir = Path(sys.executable).parent

    def output(name: str):
        return open(log_dir / f"{name}.log", "w") if log_dir else subprocess.DEVNULL

    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{free_port()}",
         *[arg for module in scheduler_preloads for arg in ("--preload", module)]],
        cwd=ROOT, env=environment, start_new_session=True, stdout=output("scheduler"), stderr=subprocess.STDOUT)
    address = f"tcp://127.0.0.1:{port}"
    processes = [scheduler]
    for i in range(workers):
        preload_args = [arg for module in ("lid_dask.worker", *preloads) for arg in ("--preload", module)]
        processes.append(subprocess.Popen(
            [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
             "--name", f"worker-{i}", "--no-dashboard", "--preload-nanny", "lid_dask.nanny", *preload_args],
            cwd=ROOT, env=environment, start_new_session=True, stdout=output(f"worker-{i}"),
            stderr=subprocess.STDOUT))
    from distributed import Client

    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
    except BaseException:
        stop_processes(processes)
        raise
    return address, processes


def stop_processes(processes) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def long_lived_cluster():
    """One scheduler and one worker for a whole test module, as `cluster/` deploys them."""
    address, processes = start_long_lived_cluster()
    yield address
    stop_processes(processes)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")  # not longer: playwright's event loop runs while it is open (asyncio.run fails)
def browser():
    """Headless Debian chromium driven by playwright (no browser download), for the pages lid-dask
    serves. Host names other than loopback resolve to nothing, so a page that would need the
    internet fails here as it would on an offline cluster."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/system-packages.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"])
        yield chromium
        chromium.close()
