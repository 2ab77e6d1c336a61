"""The notebooks in notebooks/ execute end to end (nbclient, a fresh kernel each)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# minutes each on 2 cores (04: ODE twins' compilation and escalation, ~7 min; 02 and 07: six growth
# laws with escalations; 05: 6 patients x 3 published models; 08: a FHIR study end to end, whose
# reading is tested in tests/test_fhir.py); the default run executes 01 and 03
SLOW = {
    "02_tumour_growth_comparison.ipynb",
    "04_nonlinear_twins.ipynb",
    "05_vancomycin_mipd.ipynb",
    "06_linear_vs_saturable.ipynb",
    "07_tumour_growth_over_time.ipynb",
    "08_patient_data_from_fhir.ipynb",
}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p for p in NOTEBOOKS],
    ids=lambda p: p.name,
)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TWINBAYES_NOTEBOOK_QUICK", "1")  # notebooks with long studies run a subset
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    assert images >= 1, "every notebook shows at least one figure"
