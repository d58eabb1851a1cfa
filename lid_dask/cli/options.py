"""Options shared by several commands, declared once, and what they turn into."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings

from lid_dask.models import DEFAULT_MODEL, available_backends
from lid_dask.speech import DETECTORS


def engine(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The engine's settings (`IdentifyConfig`). Without `defaults` an option left out is None:
    a run keeps what it stored."""
    def default(value):
        return value if defaults else None

    parser.add_argument("-m", "--model", action="append", dest="models", metavar="SPEC",
                        help=f"model spec, repeat for consensus (default {DEFAULT_MODEL}); "
                             f"backends: {', '.join(sorted(available_backends()))}")
    parser.add_argument("-w", "--windows", default=default("auto"), metavar="PLAN",
                        help="window plan: auto | first | spread | whole, optionally :COUNTxLENGTH (default auto:3x10)")
    parser.add_argument("-l", "--languages", metavar="CODES",
                        help="comma-separated candidate languages; probabilities are renormalised over them")
    parser.add_argument("--vad", default=default("silero"), choices=DETECTORS, help="speech detector (default silero)")
    parser.add_argument("--device", default=default("auto"), choices=("auto", "cpu", "cuda"))
    storage(parser)
    parser.add_argument("--allow-root", action="append", dest="allowed_roots", default=[], metavar="ROOT",
                        help="a folder, bucket (s3://bucket) or host (https://host) that manifests may name besides "
                             "the sources' own (repeatable)")
    parser.add_argument("--allow-private-network", nargs="*", metavar="CIDR", default=None,
                        help="let HTTP(S) audio come from private, loopback or link-local addresses: all of them, "
                             "or only these networks (e.g. 10.1.0.0/16)")


def storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-options", metavar="JSON", type=json_object, default=None,
                        help='fsspec storage options, e.g. \'{"anon": true}\'; credentials among them stay in this '
                             "process (see README, Credentials)")


def json_object(text: str) -> dict:
    """A JSON object (argparse type): anything else is a usage error that says so."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is needed, e.g. '{{\"anon\": true}}', not {text}")
    return value


def engine_settings(args) -> dict:
    """`IdentifyConfig` keywords for the engine options given (None: not given)."""
    private = args.allow_private_network
    settings = dict(models=args.models, windows=args.windows, languages=args.languages, vad=args.vad,
                    device=args.device, storage_options=args.storage_options,
                    allow_private_network=None if private is None else (private or True))
    return {k: v for k, v in settings.items() if v is not None}


def database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, metavar="URL",
                        help="ledger database URL, e.g. postgresql+psycopg://user@host/db "
                             "(default $LID_DASK_DB or sqlite:///lid-dask.db)")


def database_url(args) -> str:
    from lid_dask.ledger.ledger import DEFAULT_URL

    return args.db or os.environ.get("LID_DASK_DB", DEFAULT_URL)


def cluster(parser: argparse.ArgumentParser) -> None:
    """Where batches run: a scheduler (with TLS) or a local cluster."""
    parser.add_argument("--scheduler", metavar="ADDR", help="tcp:// or tls:// address of a Dask scheduler "
                                                            "(default: a local cluster)")
    parser.add_argument("--tls-ca", metavar="PEM", help="CA certificate for tls://")
    parser.add_argument("--tls-cert", metavar="PEM", help="client certificate for tls://")
    parser.add_argument("--tls-key", metavar="PEM", help="client key for tls://")
    parser.add_argument("--workers", type=int, help="local cluster: number of worker processes")
    parser.add_argument("--dashboard-address", default=":8787", metavar="[HOST]:PORT",
                        help="local cluster: where its Dask dashboard listens (default :8787; another free port "
                             "if that one is taken)")


@contextlib.contextmanager
def cluster_client(args, env: dict | None = None):
    """A client for the cluster the options name (closed, with any local cluster, on exit)."""
    from lid_dask.cluster import cluster_client as client_for

    security = None
    if args.scheduler and args.scheduler.startswith("tls://"):
        from lid_dask.security import client_security

        security = client_security(args.tls_ca, args.tls_cert, args.tls_key)
    with contextlib.ExitStack() as stack:
        with warnings.catch_warnings():  # print_dashboard says where the dashboard went instead
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            client = stack.enter_context(client_for(args.scheduler, security=security, n_workers=args.workers,
                                                    env=env or {}, dashboard_address=args.dashboard_address))
        yield client


def print_dashboard(client, args, console) -> None:
    """Where to watch: the dashboard's address, and whether it fell back to another port."""
    link = client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
    if not link:
        console.print("no Dask dashboard on this cluster")
        return
    asked = args.dashboard_address.rpartition(":")[2]
    moved = "" if args.scheduler or asked in ("", "0") or f":{asked}/" in link else f" (port {asked} was taken)"
    console.print(f"dashboard: {link}{moved}")


def labels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, metavar="PATH",
                        help="Common Voice folder, VoxLingua107-style folders, FLEURS folder, CSV/Parquet with "
                             "uri+language, or db:NAME for reviewed labels")
    parser.add_argument("--label-format", default="auto",
                        choices=["auto", "commonvoice", "fleurs", "voxlingua", "table"])
    parser.add_argument("--split", default="test", help="split of Common Voice / FLEURS (default test)")
