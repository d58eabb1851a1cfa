"""notebooks/evaluation.ipynb runs headless on the bundled labelled samples and shows its plots."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "evaluation.ipynb"


@pytest.mark.slow
def test_evaluation_notebook(tmp_path):
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 5  # accuracy by language, confusion, reliability, coverage, risk-coverage (+ agreement)
    html = " ".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert "macro_f1" in html and "precision" in html
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "no regression" in text
    assert "AcceptRule(threshold=0." in text  # the accept rule fitted on the samples promises something
