"""Command line: example run, results folder, spec and patient checks."""

import json

import pytest
import xarray as xr

from twinbayes.cli import main
from twinbayes.library import data_path


def test_run_writes_a_complete_results_folder_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["run", "--spec", "pk_1cmt_oral", "--spec", "pk_1cmt_oral_lag", "--out", str(out), "--draws", "300", "--tune", "300", "--chains", "2", "--quiet", "--include-unconverged"]
    assert main(args) == 0
    tree = xr.open_datatree(out / "twins" / "pk_1cmt_oral.nc", engine="h5netcdf")
    assert tree["posterior"]["ka"].shape == (2, 300)
    assert tree["log_likelihood"]["concentration"].shape == (2, 300, 10)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["twins"]["pk_1cmt_oral"]["settings"]["seed"] > 0 and len(prov["twins"]["pk_1cmt_oral"]["spec_sha256"]) == 64
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["pk_1cmt_oral"]) >= {"converged", "reasons", "diagnostics"}
    printed = capsys.readouterr().out
    assert "pk_1cmt_oral" in printed and "results written" in printed and "stacking" in printed
    comparison = xr.open_datatree(out / "comparison.nc", engine="h5netcdf")
    assert set(comparison["table"].twin.values) == {"pk_1cmt_oral", "pk_1cmt_oral_lag"}
    assert float(comparison["table"]["stacking"].sum()) == pytest.approx(1.0)
    assert {p.name for p in (out / "figures").iterdir()} == {"pk_1cmt_oral_checks.png", "pk_1cmt_oral_lag_checks.png", "average.png"}

    before = (out / "provenance.json").read_text()
    assert main(args) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "provenance.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no partial folders left behind


def test_failed_run_leaves_no_partial_results(tmp_path, capsys):
    bad = tmp_path / "p.csv"
    bad.write_text("subject,time,time_unit,event,name,value,unit\n1,0,h,dose,sc,5,mg\n1,1,h,observation,concentration,1,mg/L\n")
    assert main(["run", "--spec", "pk_1cmt_oral", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "route(s) ['sc']" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


def test_specs_and_patient_commands(tmp_path, capsys):
    assert main(["specs", "list"]) == 0
    assert "pk_2cmt_oral" in capsys.readouterr().out
    assert main(["specs", "check", "pk_1cmt_oral_lag"]) == 0
    assert "max relative error" in capsys.readouterr().out
    assert main(["patient", "check", str(data_path("indometacin.csv")), "--subject", "2"]) == 0
    assert "11 from t=0.25" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("format = 1\n[model]\nname = 'x'\n")
    assert main(["specs", "check", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_bundled_example_runs_end_to_end(tmp_path, capsys):
    """The README's main job (short chains): fits, comparison, regimen study and figures."""
    out = tmp_path / "example"
    assert main(["run", "--out", str(out), "--draws", "300", "--tune", "300", "--chains", "2", "--quiet", "--include-unconverged"]) == 0
    printed = capsys.readouterr().out
    assert "P(stays in 10-20 mg/L on day 3)" in printed and "between-twin share" in printed
    result = xr.open_dataset(out / "disagreement.nc", engine="h5netcdf")
    assert set(result.scenario.values) == {"320 mg q12h", "160 mg q6h"}
    p = result.p_meets.sel(source="ensemble")
    assert float(p.min()) >= 0 and float(p.max()) <= 1 and float(result.p_meets_mcse.max()) > 0
    assert {"scenario_fans.png", "disagreement_over_time.png", "decision_table.png"} <= {p.name for p in (out / "figures").iterdir()}
