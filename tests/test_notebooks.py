"""The notebooks run headless from top to bottom and show what they promise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import lid_dask

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SAMPLES = Path(lid_dask.__file__).resolve().parent / "samples"


def _espeak_folder(folder: Path) -> Path:
    """A few labelled clips, for a checkout whose samples folder is not built yet."""
    rows = ["uri,language"]
    for lang, text in (("en", "The weather is nice today and we are going to the park."),
                       ("de", "Das Wetter ist heute schön und wir gehen in den Park."),
                       ("es", "Hoy hace buen tiempo y vamos al parque.")):
        subprocess.run(["espeak-ng", "-v", lang, "-w", str(folder / f"{lang}.wav"), text], check=True)
        rows.append(f"{lang}.wav,{lang}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_quickstart_runs_and_shows_results_and_plot(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (SAMPLES.is_dir() and any(SAMPLES.iterdir())):
        if shutil.which("espeak-ng") is None:
            pytest.skip("no lid_dask/samples and no espeak-ng to make stand-in audio")
        monkeypatch.setenv("LID_DASK_AUDIO", str(_espeak_folder(tmp_path)))

    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # The results table: a DataFrame with the language and confidence columns.
    assert any("<table" in h and "language" in h and "confidence" in h and "needs_review" in h for h in html)
    # The language-mix bar plot, as a PNG.
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert pngs and all(len(p) > 1000 for p in pngs)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "'done'" in text and "dead" in text  # status counts, and the broken file of the retry demo
    assert "rows written to" in text
    assert "Traceback" not in text
