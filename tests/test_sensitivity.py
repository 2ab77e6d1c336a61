"""Prior-data conflict: an adult prior on a neonate's data is flagged in the fit, summary.json and report."""

import html
import json

import numpy as np
import pytest
import xarray as xr

from twinbayes import fit, load_spec, simulate_patient
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.run.cli import main

SPEC = load_spec("pk_1cmt_iv")  # adult prior: CL ~ lognormal(1.6, 1), median 4.95 L/h
TIMES = np.array([0.5, 1, 2, 4, 8, 12, 24, 48])
DOSE = {"iv": (np.array([0.0]), np.array([20.0]))}
ADULT = {"CL": 5.0, "V": 10.0, "sigma_add": 0.05, "sigma_prop": 0.1}
NEONATE = {"CL": 0.017, "V": 2.5, "sigma_add": 0.05, "sigma_prop": 0.1}  # CL 5.7 prior SDs below


@pytest.fixture(scope="module")
def twins():
    return {
        label: fit(
            SPEC,
            simulate_patient(SPEC, truth, TIMES, DOSE, seed=1),
            seed=2,
            draws=1000,
            tune=1000,
            ladder=NO_LADDER,
        )
        for label, truth in (("adult", ADULT), ("neonate", NEONATE))
    }


def test_an_adult_prior_on_a_neonate_is_a_prior_data_conflict(twins):
    s = twins["neonate"].sensitivity
    assert s.diagnosis("CL") == "prior-data conflict" and s.conflicts == ["CL"]
    assert "CL (prior-data conflict)" in str(s)
    # the prior quantile is the lognormal CDF at the posterior median, by the closed form
    from scipy.stats import norm

    median = float(np.median(twins["neonate"].idata["posterior"]["CL"].values))
    assert s.prior_quantile["CL"] == pytest.approx(norm.cdf((np.log(median) - 1.6) / 1.0), rel=1e-9)
    assert s.prior_quantile["CL"] < 1e-6


def test_a_prior_that_agrees_with_the_data_is_not_flagged(twins):
    s = twins["adult"].sensitivity
    assert s.conflicts == [] and str(s) == "prior sensitivity: no prior-data conflict"


def test_the_conflict_reaches_summary_and_report(tmp_path, capsys):
    """The warning (one line, :mod:`twinbayes.fitting.caveats`) reaches the console, summary.json, the
    twin's NetCDF file and the report's answer box."""
    patient = simulate_patient(SPEC, NEONATE, TIMES, DOSE, seed=1)
    rows = ["subject,time,time_unit,event,name,value,unit", "n1,0,h,dose,iv,20,mg"]
    rows += [
        f"n1,{t:g},h,observation,concentration,{float(v)!r},mg/L"
        for t, v in zip(*patient.observations("concentration", "mg/L", "h"))
    ]
    (tmp_path / "neonate.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "neonate"\nseed = 3\n[patient]\ndata = "neonate.csv"\n'
        '[twins]\nspecs = ["pk_1cmt_iv"]\n[sampler]\ndraws = 1000\ntune = 1000\n'
    )
    out = tmp_path / "out"
    main(["run", str(tmp_path / "study.toml"), "--out", str(out), "--no-ladder"])
    line = "prior-data conflict: the prior of CL disagrees with this patient's data"
    assert f"warning: {line}" in capsys.readouterr().out
    twin = json.loads((out / "summary.json").read_text())["twins"]["pk_1cmt_iv"]
    assert twin["prior_sensitivity"]["CL"]["diagnosis"] == "prior-data conflict"
    assert line in twin["warnings"]
    with xr.open_datatree(out / "twins" / "pk_1cmt_iv.nc", engine="h5netcdf") as tree:
        assert line in json.loads(tree.attrs["warnings"])
    answer = (out / "report.html").read_text().split('id="answer"')[1].split("</section>")[0]
    assert f"pk_1cmt_iv: {line}" in html.unescape(answer)


def test_a_failing_sensitivity_never_takes_the_fit_down(monkeypatch):
    import twinbayes.fitting.twin

    def broken(twin):
        raise ValueError("psense failed")

    monkeypatch.setattr(twinbayes.fitting.twin, "power_scaling_sensitivity", broken)
    patient = simulate_patient(SPEC, ADULT, TIMES, DOSE, seed=1)
    twin = fit(SPEC, patient, seed=2, draws=200, tune=200, chains=2, ladder=NO_LADDER)
    assert twin.sensitivity is None and twin.idata["posterior"]["CL"].size == 400
