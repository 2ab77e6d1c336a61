"""A nonlinear twin with doses on real, public data (issue #16): the warfarin PK/PD turnover
model (``warfarin_pkpd_turnover``) and the O'Reilly warfarin data (``bundled:warfarin.csv``).

References: the counts of the source file (``scripts/make_warfarin_data.py``: 32 subjects, one
oral dose each totalling 3360 mg, 250 concentrations, 232 PCA measurements); SciPy's Radau
(``solve_reference``, rtol 1e-11) with the absorption lag as a restart; the NONMEM population
estimates of the same data (Holford's warfarin course: CL 0.131 L/h and V 8.1 L per 70 kg,
between-subject SD of log CL 0.26); and the data themselves (posterior predictive coverage).
"""

import csv

import numpy as np
import pytest

from twinbayes import Patient, fit, load_spec
from twinbayes.dynamics.ode import ode_trajectories
from twinbayes.dynamics.reference import solve_reference
from twinbayes.inputs.library import data_path

SPEC = load_spec("warfarin_pkpd_turnover")
TYPICAL = {"ka": 0.9, "tlag": 0.9, "CL": 0.13, "V": 8.0, "PCA0": 95.0, "C50": 1.3, "kout": 0.05}


def _subjects() -> list[str]:
    with open(data_path("warfarin.csv"), newline="") as fh:
        return list(dict.fromkeys(row["subject"] for row in csv.DictReader(fh)))


def test_bundled_warfarin_data_hold_every_record_of_the_source():
    patients = [Patient.from_csv("bundled:warfarin.csv", subject=s) for s in _subjects()]
    data = [p.data for p in patients]
    count = {
        name: sum(int((d["obs_name"].values == name).sum()) for d in data)
        for name in ("concentration", "pca")
    }
    assert len(patients) == 32
    assert count == {"concentration": 250, "pca": 232}
    assert sum(d.sizes["dose"] for d in data) == 32
    assert sum(float(d["dose_amount"].sum()) for d in data) == pytest.approx(3360.0)
    first = patients[0].data
    conc = first["obs_value"].values[first["obs_name"].values == "concentration"]
    np.testing.assert_array_equal(conc[:4], [0.0, 1.9, 3.3, 6.6])  # 0.5-3 h: the lag shows


def test_the_warfarin_twin_matches_radau_through_the_lag():
    """States (depot, plasma, PCA) within 1e-6 of Radau, including an output between the dose
    and its lagged absorption, for two doses."""
    env = SPEC.evaluate_derived(TYPICAL)
    times = np.array([0.0, 0.5, 0.9, 1.0, 3.0, 12.0, 24.0, 24.5, 36.0, 48.0, 96.0, 144.0])
    doses = {"oral": (np.array([0.0, 24.0]), np.array([100.0, 50.0]))}
    ours = ode_trajectories(SPEC, env, times, list(SPEC.states), doses=doses)
    ref = solve_reference(
        SPEC, env, times, doses, x0={"depot": 0.0, "central": 0.0, "PCA": TYPICAL["PCA0"]}
    )
    for state in SPEC.states:
        scale = np.abs(ref[state]).max()
        np.testing.assert_allclose(ours[state], ref[state], rtol=1e-6, atol=1e-6 * scale)
    assert ours["central"][1] == 0.0 and ours["central"][3] > 0.0  # nothing absorbed before tlag
    assert ours["PCA"].min() < 60.0  # production inhibited: PCA falls from 95


@pytest.mark.slow
def test_nuts_fits_the_warfarin_twin_to_a_real_patient():
    """Subject 1 of O'Reilly's data (100 mg, 11 concentrations from 0.5 h, 7 PCA from 24 h):
    the convergence gate passes, 90 % predictive intervals hold at least 80 % of the 18
    measurements, V lies within 3 between-subject SDs of the population estimate, and the PCA
    turnover half-life in the range of the vitamin K dependent factors' half-lives."""
    patient = Patient.from_csv("bundled:warfarin.csv", subject=1)
    twin = fit(SPEC, patient, seed=3, progress=False)
    assert twin.converged, twin.reasons
    assert twin.diagnostics.divergent == 0
    post = twin.idata["posterior"]
    v = float(post["V"].median())
    assert abs(np.log(v / (8.1 * 66.7 / 70))) < 3 * 0.14, v  # NONMEM: V 8.1 L/70 kg, SD log V 0.14
    half_life = np.log(2) / post["kout"].values.ravel()
    assert 6.0 < np.median(half_life) < 72.0
    inside, total = 0, 0
    for name in ("concentration", "pca"):
        observed = twin.design.values[name]
        draws = twin.idata["posterior_predictive"][name].values.reshape(-1, len(observed))
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        inside += int(((observed >= lo) & (observed <= hi)).sum())
        total += len(observed)
    assert total == 18 and inside >= 0.8 * total, (inside, total)
