"""Command line and study runs: results folders, reproducibility, interrupted runs, reports."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from twinbayes.inputs.library import data_path
from twinbayes.run.cli import main
from twinbayes.run.study import load_study
from twinbayes.spec import SpecError

SHORT = [
    "--draws", "300", "--tune", "300", "--chains", "2", "--quiet", "--include-unconverged", "--no-ladder",
]  # fmt: skip


def _exit_code_reported(out) -> int:
    """The outcome code summary.json records (a short run's twins may fail the 400-ESS gate: 0, 3 or 4)."""
    return json.loads((out / "summary.json").read_text())["outcome"]["code"]


STUDY = """
[study]
name = "two-twins"
seed = 7

[patient]
data = "{data}"
subject = "{subject}"

[twins]
specs = ["pk_1cmt_oral", "pk_1cmt_oral_lag"]
"""


@pytest.fixture
def study_file(tmp_path):
    def _make(data=str(data_path("theophylline.csv")), subject="4", extra=""):
        p = tmp_path / "study.toml"
        p.write_text(STUDY.format(data=data, subject=subject) + extra)
        return p

    return _make


def test_run_writes_a_complete_results_folder_and_refuses_to_overwrite(
    tmp_path, study_file, capsys
):
    out = tmp_path / "res"
    args = ["run", str(study_file()), "--out", str(out), *SHORT]
    rc = main(args)
    assert rc in (0, 3, 4) and rc == _exit_code_reported(out)
    tree = xr.open_datatree(out / "twins" / "pk_1cmt_oral.nc", engine="h5netcdf")
    assert tree["posterior"]["ka"].shape == (2, 300)
    assert tree["log_likelihood"]["concentration"].shape == (2, 300, 10)
    prov = json.loads((out / "provenance.json").read_text())
    assert (
        prov["twins"]["pk_1cmt_oral"]["settings"]["seed"] == 8
        and len(prov["twins"]["pk_1cmt_oral"]["spec_sha256"]) == 64
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["twins"]["pk_1cmt_oral"]) >= {
        "converged",
        "reasons",
        "diagnostics",
        "gate_attempts",
    }
    comparison = xr.open_datatree(out / "comparison.nc", engine="h5netcdf")
    assert set(comparison["table"].twin.values) == {"pk_1cmt_oral", "pk_1cmt_oral_lag"}
    assert float(comparison["table"]["stacking"].sum()) == pytest.approx(1.0)
    assert {p.name for p in (out / "figures").iterdir()} == {
        "pk_1cmt_oral_checks.png",
        "pk_1cmt_oral_lag_checks.png",
        "average.png",
    }
    assert (
        (out / "study.toml").exists()
        and (out / "specs" / "pk_1cmt_oral.toml").exists()
        and (out / "report.html").exists()
    )

    report = (out / "report.html").read_text()
    assert 'src="http' not in report and "<link" not in report  # self-contained
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").read_text() == report

    before = (out / "provenance.json").read_text()
    assert main(args) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "provenance.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "res",
        "study.toml",
    ]  # no partial folders left behind


def test_failed_run_leaves_no_partial_results(tmp_path, study_file, capsys):
    bad = tmp_path / "p.csv"
    bad.write_text(
        "subject,time,time_unit,event,name,value,unit\n1,0,h,dose,sc,5,mg\n1,1,h,observation,concentration,1,mg/L\n"
    )
    assert (
        main(
            [
                "run",
                str(study_file(data=str(bad), subject="1")),
                "--out",
                str(tmp_path / "r"),
                *SHORT,
            ]
        )
        == 2
    )
    assert "route(s) ['sc']" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "study.toml"]


def test_bad_study_files_name_file_and_field(study_file):
    cases = [
        ("\n[sampler]\ndraws = -3\n", "sampler.draws"),
        (
            "\n[[scenarios]]\nname = 'x'\nroute = 'oral'\namount = 100\ninterval = 12\ndoses = 3\n",
            "predictions",
        ),
        ("\n[[qois]]\nname = 'q'\nkind = 'median'\n", "qois[0].kind"),
        (
            "\n[[qois]]\nname = 'q'\nkind = 'custom'\nexpression = \"__import__('os')\"\ninputs = {}\n",
            "qois[0].inputs",
        ),
        ("\n[[targets]]\nqoi = 'nothing'\nlower = 1\n", "targets[0].qoi"),
        ("\n[comparison]\ncv = 'kfold'\n", "comparison.cv"),
        ("\n[comparison]\ncv = 'lfo'\nlfo_min_points = 0\n", "comparison.lfo_min_points"),
        ("\n[comparison]\nlfo_method = 'psis'\n", "comparison.lfo_method"),
    ]
    for extra, field in cases:
        path = study_file(extra=extra)
        with pytest.raises(SpecError) as err:
            load_study(path)
        assert str(err.value).startswith(f"{path}: {field}:"), str(err.value)
    with pytest.raises(SpecError, match="patient.data"):
        load_study(study_file(data="no/such.csv"))
    lfo = load_study(
        study_file(extra="\n[comparison]\ncv = 'lfo'\nlfo_min_points = 4\n")
    ).comparison
    assert (lfo["cv"], lfo["lfo_min_points"], lfo["lfo_horizon"], lfo["lfo_method"]) == (
        "lfo",
        4,
        1,
        "approx",
    )


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


def _strip_provenance(html: str) -> str:
    return html.split('<section id="provenance">')[0]


def test_bundled_example_is_reproducible_end_to_end(tmp_path, capsys):
    """The README's main job (short chains), twice with the same seed: identical numbers."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        rc = main(["run", "--out", str(out), *SHORT])
        assert rc in (0, 3, 4) and rc == _exit_code_reported(out)
    printed = capsys.readouterr().out
    assert "P(stays in 10-20 mg/L on day 3)" in printed and "between-twin share" in printed
    for name in ("pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"):
        a, b = (xr.open_datatree(o / "twins" / f"{name}.nc", engine="h5netcdf") for o in outs)
        for group in ("posterior", "log_likelihood", "posterior_predictive"):
            for var in a[group].data_vars:
                np.testing.assert_array_equal(a[group][var].values, b[group][var].values)
    da, db = (xr.open_dataset(o / "disagreement.nc", engine="h5netcdf") for o in outs)
    xr.testing.assert_identical(da, db)
    assert da.attrs["weight_draws"] == 200  # the comparison's weight draws reach the shares
    assert np.isfinite(da.qoi_between_share_q05).all() or da.attrs["n_ensemble"] < 2
    assert set(da.scenario.values) == {"320 mg q12h", "160 mg q6h"}
    assert float(da.p_meets_mcse.max()) > 0
    ha, hb = ((o / "report.html").read_text() for o in outs)
    assert _strip_provenance(ha) == _strip_provenance(hb)
    assert (
        ha.count("data:image/png;base64,") == 3 + 1 + 3
    )  # checks per twin, average, scenario figures
    assert {"scenario_fans.png", "disagreement_over_time.png", "decision_table.png"} <= {
        p.name for p in (outs[0] / "figures").iterdir()
    }
    assert main(["report", str(outs[0])]) == 0  # from the files: the run's report, to the byte
    assert (outs[0] / "report.html").read_text() == ha


def test_killed_run_leaves_nothing_that_looks_complete_and_rerun_finishes(tmp_path, study_file):
    out = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "twinbayes.run.cli",
        "run",
        str(study_file()),
        "--out",
        str(out),
        "--draws",
        "300",
        "--tune",
        "300",
        "--chains",
        "2",
        "--quiet",
        "--no-figures",
        "--no-ladder",
    ]
    # the killed run holds before its final writes, so the kill lands midway however the two
    # processes are scheduled (a busy machine once let a run reach summary.json before the kill)
    holding = (
        "import sys, time\n"
        "import twinbayes.run.pipeline as pipeline\n"
        "write = pipeline._write\n"
        "pipeline._write = lambda *args: (time.sleep(120), write(*args))[1]\n"
        "from twinbayes.run.cli import console\n"
        "console()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holding, *cmd[3:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".res.partial-*/twins/*.nc")):
        time.sleep(0.2)
    assert list(tmp_path.glob(".res.partial-*/twins/*.nc")), "the run never got to its first fit"
    os.killpg(proc.pid, signal.SIGKILL)  # midway: one twin written, the rest not
    proc.wait()
    assert not out.exists()
    partial = next(tmp_path.glob(".res.partial-*"))
    assert not (partial / "summary.json").exists() and not (partial / "report.html").exists()
    rc = subprocess.run(cmd, capture_output=True).returncode
    assert (out / "report.html").exists() and (out / "summary.json").exists()
    assert rc in (0, 3, 4, 5) and rc == _exit_code_reported(out)


def test_ctrl_c_ends_the_run_with_130_and_changes_no_results_folder(tmp_path, study_file, ctrl_c):
    """An interrupt while a later twin fits or is scored ends the run (nutpie alone would return
    the draws so far and the study would go on); the existing results folder stays as it was."""
    out = tmp_path / "res"
    out.mkdir()
    (out / ".twinbayes-results").write_text("")
    (out / "summary.json").write_text('{"earlier": "run"}')
    cmd = [sys.executable, "-m", "twinbayes.run.cli", "run", str(study_file()), "--out", str(out)]
    long = ["--draws", "100000"]  # each twin samples for seconds: the interrupt lands in a fit
    proc = subprocess.Popen(
        [*cmd, "--force", "--no-figures", *SHORT, *long], stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".res.partial-*/twins/*.nc")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".res.partial-*/twins/*.nc")), "the run never got to its first fit"
    proc.send_signal(signal.SIGINT)  # twin 2 is being fitted (sampled), twin 1 scored
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; no results folder was changed" in err
    assert (out / "summary.json").read_text() == '{"earlier": "run"}'
    assert not list(tmp_path.glob(".res.partial-*"))


def test_specs_check_of_a_forced_spec_needs_data_that_drive_it(capsys):
    from twinbayes.inputs.library import data_path

    assert main(["specs", "check", "glucose_minimal"]) == 2
    assert "driven by input(s) ['I']; add --patient DATA.csv" in capsys.readouterr().err
    assert (
        main(
            [
                "specs",
                "check",
                "glucose_minimal",
                "--patient",
                str(data_path("ivgtt_pacini_bergman_1986.csv")),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "glucose_minimal.toml: valid; ODE engine vs solve_ivp: max relative error" in out
    assert main(["patient", "check", str(data_path("mimicdb041_abp_assumed_inflow.csv"))]) == 0
    assert "input inflow:" in capsys.readouterr().out


def test_a_study_can_ask_for_psis_loo_without_refits(tmp_path, study_file, monkeypatch):
    import importlib

    loo_module = importlib.import_module("twinbayes.comparison.loo")  # the module, not the function

    def no_refits(*args, **kwargs):
        raise AssertionError("refits = false, yet a twin was refitted")

    monkeypatch.setattr(loo_module, "_escalate", no_refits)
    out = tmp_path / "res"
    study = study_file(extra="\n[comparison]\nrefits = false\n")
    rc = main(["run", str(study), "--out", str(out), "--no-figures", *SHORT])
    assert rc in (0, 3, 4) and rc == _exit_code_reported(out)
    table = xr.open_datatree(out / "comparison.nc", engine="h5netcdf")["table"]
    assert set(table.cv_method.values) == {"psis-loo"}
    for n_high, note in zip(table.n_high_k.values, table.note.values):
        assert ("not refitted: their PSIS elpd is unreliable" in str(note)) == (n_high > 0)


def test_the_command_exits_with_mains_code_and_flushes_its_output(tmp_path):
    """``twinbayes`` (cli.console) ends the process itself after main: same code, nothing lost."""
    run = [
        sys.executable,
        "-c",
        "import sys; from twinbayes.run.cli import console; sys.argv[0] = 'twinbayes'; console()",
    ]
    ok = subprocess.run([*run, "specs", "list"], capture_output=True, text=True)
    assert ok.returncode == 0 and "pk_1cmt_oral " in ok.stdout and ok.stdout.endswith("\n")
    bad = subprocess.run(
        [*run, "specs", "check", str(tmp_path / "none.toml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "file not found" in bad.stderr
