"""Fill in cluster/salad/container-group.json for a fleet, and check it against SaladCloud's API.

    python cluster/salad/fill.py --certs certs/ --image ghcr.io/ORG/lid-dask@sha256:DIGEST \
        --scheduler tls://scheduler.example.org:8786 [--replicas 100] [--priority batch] \
        [--gpu-class UUID ...] [--env NAME=VALUE ...] [--env-file FILE] > group.json

The worker's CA, certificate and key come from --certs, a folder made by ``lid-dask certs``, in the
one-line form ``lid-dask certs DIR --env`` prints (newlines written as ``\\n``, which ``lid-dask
worker`` turns back): SaladCloud takes environment variable values of one line and at most 1,000
characters. ``--env`` / ``--env-file`` add more variables, e.g. the workers' read-only storage
credentials (``LID_DASK_STORAGE_OPTIONS={"key": ..., "secret": ...}``). The output holds the
worker's private key: send it to the API (cluster/salad/README.md) and delete it.

Every field is checked against SaladCloud's public API (``ContainerGroupPrototype`` in
api-specs/salad-cloud.yaml of SaladTechnologies/salad-cloud-docs, API 0.9.0-alpha.17): names, enums,
probe bounds, value lengths; and no ``YOUR-`` placeholder may remain. Exit 1 with the problems
otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("container-group.json")
PLACEHOLDER = "YOUR-"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# (minimum, maximum) of each probe field in the API; every field is required.
PROBE_BOUNDS = {"initial_delay_seconds": (0, 1200), "period_seconds": (1, 120), "timeout_seconds": (1, 60),
                "success_threshold": (1, 10), "failure_threshold": (1, 20)}


def problems(group: dict, placeholders: bool = False) -> list[str]:
    """What SaladCloud's API would refuse in `group` (and any placeholder left, unless `placeholders`)."""
    found = []

    def check(ok: bool, message: str):
        if not ok:
            found.append(message)

    def whole(value, low, high=None) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)

    check(isinstance(group.get("name"), str) and re.fullmatch(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", group["name"]) is not None,
          "name: 2-63 characters, lowercase letters, digits and hyphens, starting with a letter")
    if "display_name" in group:
        check(re.fullmatch(r"[ ,\-.0-9A-Za-z]{2,63}", str(group["display_name"])) is not None,
              "display_name: 2-63 letters, digits, spaces, commas, hyphens or dots")
    check(whole(group.get("replicas"), 0, 500), "replicas: 0 to 500 per container group")
    check(group.get("restart_policy") in ("always", "on_failure", "never"), "restart_policy: always | on_failure | never")
    check(isinstance(group.get("autostart_policy"), bool), "autostart_policy: true or false (required)")
    codes = group.get("country_codes")
    if codes is not None:
        check(isinstance(codes, list) and 1 <= len(codes) <= 500
              and all(isinstance(c, str) and re.fullmatch(r"[a-z]{2}", c) for c in codes),
              "country_codes: 1-500 lowercase ISO 3166 codes (leave the field out for any country)")
    container = group.get("container") or {}
    image = container.get("image")
    check(isinstance(image, str) and 1 <= len(image) <= 2048, "container.image: 1-2048 characters (required)")
    command = container.get("command")
    if command is not None:
        check(isinstance(command, list) and len(command) <= 100
              and all(isinstance(c, str) and 1 <= len(c) <= 1000 and "\n" not in c for c in command),
              "container.command: up to 100 one-line arguments of 1-1000 characters")
    resources = container.get("resources") or {}
    check(whole(resources.get("cpu"), 1, 1024), "container.resources.cpu: 1-1024 (required)")
    check(whole(resources.get("memory"), 1024), "container.resources.memory: MB, at least 1024 (required)")
    if "shm_size" in resources:
        check(whole(resources["shm_size"], 64), "container.resources.shm_size: MB of /dev/shm, at least 64")
    classes = resources.get("gpu_classes", [])
    check(isinstance(classes, list) and len(classes) <= 100 and all(isinstance(c, str) and UUID.match(c) for c in classes),
          "container.resources.gpu_classes: GPU class UUIDs (GET /organizations/ORG/gpu-classes lists them)")
    check(container.get("priority") in (None, "high", "medium", "low", "batch"),
          "container.priority: high | medium | low | batch")
    environment = container.get("environment_variables") or {}
    for name, value in environment.items():
        check(isinstance(value, str) and 1 <= len(value) <= 1000 and "\n" not in value and "\r" not in value,
              f"container.environment_variables.{name}: one line of 1-1000 characters"
              + (f" (it has {len(value)})" if isinstance(value, str) else ""))
    for kind in ("startup_probe", "liveness_probe", "readiness_probe"):
        probe = group.get(kind)
        if probe is None:
            continue
        for field, (low, high) in PROBE_BOUNDS.items():
            check(whole(probe.get(field), low, high), f"{kind}.{field}: {low}-{high} (required)")
        actions = [a for a in ("exec", "http", "tcp", "grpc") if probe.get(a) is not None]
        check(len(actions) == 1, f"{kind}: exactly one of exec, http, tcp, grpc")
        if "exec" in actions:
            argv = probe["exec"].get("command")
            check(isinstance(argv, list) and 1 <= len(argv) <= 100
                  and all(isinstance(a, str) and 1 <= len(a) <= 2048 for a in argv),
                  f"{kind}.exec.command: 1-100 arguments of 1-2048 characters")
    if not placeholders:
        for path, value in _strings(group):
            check(PLACEHOLDER not in value, f"{path}: still a placeholder ({value[:60]})")
    return found


def _strings(value, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def fill(template: dict, certs: Path | None, image: str | None, scheduler: str | None, replicas: int | None,
         priority: str | None, gpu_classes: list[str], env: dict[str, str]) -> dict:
    group = json.loads(json.dumps(template))
    container = group["container"]
    variables = container.setdefault("environment_variables", {})
    if certs is not None:
        from lid_dask.tls import environment_form

        for line in environment_form(certs).splitlines():
            name, _, value = line.partition("=")
            variables[name] = value
    if image:
        container["image"] = image
    if scheduler:
        variables["LID_DASK_SCHEDULER"] = scheduler
    if replicas is not None:
        group["replicas"] = replicas
    if priority:
        container["priority"] = priority
    if gpu_classes:
        container["resources"]["gpu_classes"] = gpu_classes
    variables.update(env)
    return group


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python cluster/salad/fill.py", description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--certs", type=Path, help="a folder made by `lid-dask certs` (ca.pem, worker.pem, worker.key)")
    parser.add_argument("--image", help="the image, best pinned by digest: REGISTRY/NAME@sha256:...")
    parser.add_argument("--scheduler", help="tls://HOST:8786, as the workers reach it")
    parser.add_argument("--replicas", type=int)
    parser.add_argument("--priority", choices=("high", "medium", "low", "batch"))
    parser.add_argument("--gpu-class", action="append", default=[], dest="gpu_classes", metavar="UUID")
    parser.add_argument("--env", action="append", default=[], type=_assignment, metavar="NAME=VALUE")
    parser.add_argument("--env-file", type=Path, help="NAME=VALUE lines (# comments and blank lines skipped)")
    parser.add_argument("--check", action="store_true", help="only check the template (placeholders allowed)")
    args = parser.parse_args(argv)

    template = json.loads(args.template.read_text())
    if args.check:
        found = problems(template, placeholders=True)
        print("\n".join(found) or f"{args.template}: fits SaladCloud's API", file=sys.stderr if found else sys.stdout)
        return 1 if found else 0
    env = dict(args.env)
    if args.env_file:
        for line in args.env_file.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, value = _assignment(line.strip())
                env[name] = value
    group = fill(template, args.certs, args.image, args.scheduler, args.replicas, args.priority, args.gpu_classes, env)
    found = problems(group)
    if found:
        print("not written; fix these first:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    json.dump(group, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
