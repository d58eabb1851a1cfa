"""pyproject.toml and environment.yml pin the same versions, so every install is the same runtime."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(==|>=)\s*([^,;\s]+)", requirement.strip())
        if match and match[3] == "==":
            pins[match[1].lower()] = match[4]
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    for extra in ("bundled", "s3", "http", "postgres", "transformers", "notebook"):
        declared |= _pins(project["optional-dependencies"][extra])
    lines = [line.strip()[2:] for line in (ROOT / "environment.yml").read_text().splitlines()
             if line.strip().startswith("- ")]
    conda = _pins(lines)
    assert conda, "environment.yml lists no pinned pip packages"
    assert {name: version for name, version in conda.items() if name in declared} == \
        {name: declared[name] for name in conda if name in declared}
    assert set(conda) == set(declared), set(conda) ^ set(declared)
