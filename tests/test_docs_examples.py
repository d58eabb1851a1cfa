"""The documentation's examples run as written.

Every fenced ```bash / ```sh and ```python block of the documents below runs here, section by
section, in a fresh folder that looks like the checkout (its tracked files linked, so what a block
writes stays in that folder): the bundled samples in lid_dask/samples, the default SQLite ledger
(./lid-dask.db), a local Dask cluster. Consecutive Python blocks of a section run as one script in
one interpreter, as a reader would paste them, so a later block may use an earlier one's names.
A block that cannot run here (it installs packages, or needs a GPU, a remote scheduler, a bucket, a
download...) carries `<!-- example: skip (why) -->` on the line before it, so its reader sees why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = ("README.md", "cluster/README.md", "benchmarks/DISTRIBUTED.md", "notebooks/quickstart.ipynb")
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!-- example: skip \((.+)\) -->$")
LANGUAGES = {"bash": "bash", "sh": "bash", "python": "python"}
TIMEOUT = 300  # seconds for one block (the slowest, the quickstart notebook, takes about 30)


@dataclass
class Block:
    doc: str
    section: str
    line: int
    language: str  # bash, python, or what the fence says (not run)
    code: str
    skip: str | None  # why it does not run here

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.section})"


def markdown(doc: str) -> list[str]:
    """The Markdown lines of `doc`; of a notebook, its Markdown cells one after another."""
    path = ROOT / doc
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return [line for cell in cells if cell["cell_type"] == "markdown"
                for line in [*"".join(cell["source"]).splitlines(), ""]]
    return path.read_text().splitlines()


def blocks(doc: str) -> list[Block]:
    lines, found, section, i = markdown(doc), [], "", 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = SKIP.match(lines[i - 1].strip()) if i else None
            language = LANGUAGES.get(fence.group(1), fence.group(1) or "text")
            found.append(Block(doc, section, i + 1, language, "\n".join(lines[i + 1:end]) + "\n",
                               marker.group(1) if marker else None))
            i = end + 1
            continue
        if lines[i].startswith("#"):
            section = lines[i].lstrip("#").strip()
        i += 1
    return found


def runnable_sections() -> dict[tuple[str, str], list[Block]]:
    sections: dict[tuple[str, str], list[Block]] = {}
    for doc in DOCS:
        for block in blocks(doc):
            if block.language in ("bash", "python") and not block.skip:
                sections.setdefault((doc, block.section), []).append(block)
    return sections


SECTIONS = runnable_sections()


def run(command: list[str], cwd: Path, what: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `command`; on a timeout, end its whole process group (a hung local cluster's workers too)."""
    env = env or environment()
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"{what} ran past {TIMEOUT} s\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}")
    assert process.returncode == 0, (f"{what} exited with {process.returncode}\n--- stdout\n{stdout[-4000:]}\n"
                                     f"--- stderr\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def environment() -> dict:
    """A reader's shell: this environment's commands first on PATH, no ledger chosen ($LID_DASK_DB)."""
    env = {k: v for k, v in os.environ.items() if k != "LID_DASK_DB"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A folder that looks like the checkout: each tracked top-level file or folder linked."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    work = tmp_path / "work"
    work.mkdir()
    for name in sorted({path.split("/")[0] for path in tracked.splitlines() if path}):
        (work / name).symlink_to(ROOT / name)
    return work


SLOW = ("Runs", "Watching")  # README sections that start local clusters again and again: about a minute on 2 busy cores
PARAMS = [pytest.param(doc, section, id=f"{doc}: {section}",
                       marks=[pytest.mark.slow] if doc == "README.md" and section.startswith(SLOW) else [])
          for doc, section in sorted(SECTIONS)]


@pytest.mark.parametrize("doc, section", PARAMS)
def test_examples_of_a_section_run(doc, section, checkout):
    """Each block as a reader runs it: a shell block with `set -euo pipefail`, Python as a script."""
    units: list[list[Block]] = []
    for block in SECTIONS[doc, section]:
        if block.language == "python" and units and units[-1][0].language == "python":
            units[-1].append(block)
        else:
            units.append([block])
    for unit in units:
        first = unit[0]
        if first.language == "bash":
            command = ["bash", "-euo", "pipefail", "-c", first.code]
        else:
            script = checkout / f"example_{first.line}.py"
            script.write_text("\n".join(block.code for block in unit))
            command = [str(BIN / "python"), script.name]
        run(command, checkout, first.where)


def test_the_readme_runs_its_main_sections():
    """Examples that only say why they are skipped would test nothing: these sections run."""
    runnable = {section for doc, section in SECTIONS if doc == "README.md"}
    for wanted in ("Runs", "Identify without a cluster", "Command line"):
        assert any(section.startswith(wanted) for section in runnable), (wanted, runnable)
    assert ("benchmarks/DISTRIBUTED.md", "4. The quickstart notebook (`notebooks/quickstart.ipynb`, "
            "`tests/test_notebooks.py`)") in SECTIONS


def test_every_skip_marker_stands_before_a_block():
    """A marker separated from its block by a blank line would silently mark nothing."""
    for doc in DOCS:
        markers = sum(bool(SKIP.match(line.strip())) for line in markdown(doc))
        assert markers == sum(block.skip is not None for block in blocks(doc)), doc


def headings(doc: str) -> set[str]:
    lines, inside, found = markdown(doc), False, set()
    for line in lines:
        if FENCE.match(line):
            inside = not inside
        elif line.startswith("#") and not inside:
            found.add(line.lstrip("#").strip())
    return found


def test_references_to_readme_sections_name_one():
    """Scripts and code point readers to README "SECTION": that section must be there."""
    names = headings("README.md")
    paths = [*ROOT.glob("scripts/*.sh"), ROOT / "pyproject.toml", *ROOT.glob("lid_dask/**/*.py")]
    missing = [(path.relative_to(ROOT), ref) for path in paths
               for ref in re.findall(r'README(?:\.md)? "([^"]+)"', path.read_text())
               if not any(name.startswith(ref) for name in names)]
    assert not missing


def test_benchmark_commands_take_their_options():
    """The benchmark commands of the docs run for minutes on the full inputs (tests/benchmarks runs
    each on tiny input), but every option they give must be one the benchmark takes."""
    commands: dict[str, set[str]] = {}
    for doc in ("benchmarks/DISTRIBUTED.md", "benchmarks/README.md"):
        for block in blocks(doc):
            for line in block.code.replace("\\\n", " ").splitlines():
                found = re.search(r"python -m (benchmarks\.\w+)(.*)", line.split("#")[0])
                if found:
                    commands.setdefault(found.group(1), set()).update(re.findall(r"(?<!\S)(--[\w-]+)", found.group(2)))
    assert "benchmarks.bench_orchestration" in commands
    for module, given in sorted(commands.items()):
        shown = run([str(BIN / "python"), "-m", module, "--help"], ROOT, f"{module} --help").stdout
        assert not {option for option in given if option not in shown}, module


@pytest.mark.slow  # about a minute on 2 busy cores: a local cluster over the 21 samples, then two commands
def test_the_demo_ends_with_the_run_summary(checkout):
    """`bash scripts/demo.sh` installs, then runs its last command: that run ends with the answers
    and the commands that export them, which run as printed. (Installing needs the registry: the
    command runs here with this environment's lid-dask.)"""
    line = next(line for line in (ROOT / "scripts" / "demo.sh").read_text().splitlines()
                if line.startswith(".venv/bin/lid-dask "))
    command = [str(BIN / "lid-dask"), *(arg for arg in shlex.split(line)[1:] if arg != "$@")]
    printed = run(command, checkout, "scripts/demo.sh's lid-dask run").stdout
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    assert "English [en]" in printed and "files answered" in printed  # the answers, by language
    assert lines[-1].startswith("results: lid-dask export samples")
    for shown in re.findall(r"^\s*(?:results|list them): (lid-dask .+)$", printed, re.M):
        run(["bash", "-euo", "pipefail", "-c", shown], checkout, shown)
    assert (checkout / "samples.parquet").is_file()
