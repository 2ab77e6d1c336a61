"""Model-informed precision dosing: three published vancomycin population models as twins.

References, independent of the specs' expressions:

* the published models written out below from the papers' equations (Goti 2018 Table 2;
  Thomson 2009 as coded in InsightRX/PKPDposterior; Zhao 2021 equations 1-4) and solved with
  SciPy's Radau at tight tolerances, with the infusions as piecewise-constant inputs;
* ``AUC24,ss = D24 / CL`` against the trapezoid of a simulated steady-state day;
* Sheiner & Beal's (1981) bias and imprecision computed by hand.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp, trapezoid

import twinbayes as tb
from twinbayes.decisions.mipd import (
    mixture,
    prediction_errors,
    recommend_dose,
    steady_state_auc24,
    target_attainment,
)
from twinbayes.dynamics.design import design_for
from twinbayes.model.twin_model import TwinModel

DOSE, TINF, TAU = 1000.0, 1.0, 12.0


def published(name: str, cov: dict) -> tuple[float, float, float, float]:
    """Typical (CL, V1, Q, V2) of each paper for the covariates, from its own equations."""
    w, crcl = cov["weight"], cov["crcl"]
    if name == "vancomycin_goti2018":
        d = cov["dialysis"]
        return 4.5 * (crcl / 120) ** 0.8 * 0.7**d, 58.4 * (w / 70) * 0.5**d, 6.5, 38.4 * (w / 70)
    if name == "vancomycin_thomson2009":
        return 2.99 * (1 + 0.0154 * (crcl - 66)), 0.675 * w, 2.28, 0.732 * w
    return 5.58 * crcl**1.5 / (93.8**1.5 + crcl**1.5), (35.7 if cov["icu"] else 8.02), 2.66, 36.8


def radau_concentrations(cl, v1, q, v2, times, dose_times):
    """Two compartments with 1-h infusions, solved piecewise between infusion switches."""
    breaks = np.unique(np.concatenate([[0.0], dose_times, dose_times + TINF, [times.max()]]))
    out, a = {}, [0.0, 0.0]
    for t0, t1 in zip(breaks[:-1], breaks[1:]):
        mid = 0.5 * (t0 + t1)
        rate = sum(DOSE / TINF for td in dose_times if td <= mid < td + TINF)
        inside = times[(times > t0) & (times <= t1)]
        sol = solve_ivp(
            lambda t, x, r=rate: [
                r - (cl + q) / v1 * x[0] + q / v2 * x[1],
                q / v1 * x[0] - q / v2 * x[1],
            ],
            (t0, t1),
            a,
            method="Radau",
            rtol=1e-11,
            atol=1e-12,
            t_eval=np.unique(np.append(inside, t1)),
        )
        out.update({float(t): sol.y[0, j] / v1 for j, t in enumerate(sol.t)})
        a = sol.y[:, -1]
    return np.array([out[float(t)] for t in times])


COVARIATES = [
    {"weight": 70.0, "crcl": 120.0, "dialysis": 0.0, "icu": 0.0},
    {"weight": 95.0, "crcl": 45.0, "dialysis": 1.0, "icu": 1.0},
]
UNITS = {"weight": "kg", "crcl": "mL/min", "dialysis": "1", "icu": "1"}


@pytest.mark.parametrize("cov", COVARIATES, ids=["reference", "heavy-renal-icu"])
@pytest.mark.parametrize(
    "name", ["vancomycin_goti2018", "vancomycin_thomson2009", "vancomycin_zhao2021"]
)
def test_vancomycin_specs_reproduce_the_published_models(name, cov):
    spec = tb.load_spec(name)
    times = np.array([0.5, 1.0, 3.0, 11.9, 12.5, 24.0, 35.9, 37.0, 47.9])
    dose_times = np.arange(4) * TAU
    patient = tb.Patient.from_records(
        [(t, "concentration", 1.0, "mg/L") for t in times],
        [(t, "iv", DOSE, "mg", TINF) for t in dose_times],
        covariates={k: (v, UNITS[k]) for k, v in cov.items()},
    )
    zeros = {p: np.array([0.0]) for p in spec.parameters}  # typical individual: every eta 0
    got = TwinModel.of(spec).means(zeros, design_for(spec, patient))["concentration"][0]
    want = radau_concentrations(*published(name, cov), times, dose_times)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_steady_state_auc_is_the_daily_dose_over_clearance():
    """Trapezoid over day 9 of 1 g q12h (1-h infusions) vs D24 / CL, typical Goti patient."""
    cl, v1, q, v2 = published("vancomycin_goti2018", COVARIATES[0])
    t = np.linspace(192.0, 216.0, 2401)
    c = radau_concentrations(cl, v1, q, v2, t, np.arange(18) * TAU)
    np.testing.assert_allclose(
        trapezoid(c, t), steady_state_auc24(np.array([cl]), 2 * DOSE), rtol=2e-3
    )


def test_target_attainment_and_the_recommended_dose_follow_from_the_clearance_draws():
    cl = np.random.default_rng(1).lognormal(np.log(4.0), 0.3, 20_000)
    p = target_attainment(cl, [1000.0, 2000.0], 400, 600)
    # P(400 <= D/CL <= 600) = P(D/600 <= CL <= D/400), log-normal CL
    from scipy.stats import lognorm

    ref = [
        lognorm.cdf(d / 400, 0.3, scale=4.0) - lognorm.cdf(d / 600, 0.3, scale=4.0)
        for d in (1000, 2000)
    ]
    np.testing.assert_allclose(p, ref, atol=0.01)
    rec = recommend_dose(cl, np.arange(500.0, 4001.0, 250.0), 400, 600)
    # the most likely dose puts the window [D/600, D/400] over the bulk of CL: D near 480 x 4 mg/day
    assert 1750 <= rec.daily_dose <= 2250 and rec.probability == pytest.approx(
        rec.probabilities.max()
    )
    with pytest.raises(ValueError, match="clearance draws must be > 0"):
        steady_state_auc24(np.array([1.0, -1.0]), 1000)


def test_mixture_draws_follow_the_weights():
    draws = {"a": np.zeros(1000), "b": np.ones(1000)}
    m = mixture(draws, {"a": 0.25, "b": 0.75}, 40_000, seed=2)
    assert m.size == 40_000 and abs(m.mean() - 0.75) < 0.01
    with pytest.raises(ValueError, match="sum to 1"):
        mixture(draws, {"a": 0.5, "b": 0.6}, 10)


def test_prediction_errors_by_hand():
    e = prediction_errors(np.array([11.0, 9.0, 12.0]), np.array([10.0, 10.0, 10.0]))
    assert e["bias_pct"] == pytest.approx(100 * (0.1 - 0.1 + 0.2) / 3)
    assert e["imprecision_pct"] == pytest.approx(100 * np.sqrt((0.01 + 0.01 + 0.04) / 3))
    assert e["within_20_pct"] == pytest.approx(100.0) and e["n"] == 3


def test_mixture_keeps_whole_trajectories():
    draws = {"a": np.tile([1.0, 2.0], (50, 1)), "b": np.tile([10.0, 20.0], (50, 1))}
    m = mixture(draws, {"a": 0.5, "b": 0.5}, 1000, seed=1)
    assert m.shape == (1000, 2) and np.all(m[:, 1] == 2 * m[:, 0])


@pytest.mark.slow
def test_importance_sampled_bma_weights_agree_with_smc_on_the_example_patient():
    """BMA of the three vancomycin twins of docs/examples: prior importance sampling vs SMC
    (an independent estimator of the same marginal likelihoods)."""
    from pathlib import Path

    from twinbayes.comparison import compare

    data = Path(__file__).resolve().parents[1] / "docs" / "examples" / "vancomycin-patient.csv"
    patient = tb.Patient.from_csv(data)
    names = ["vancomycin_goti2018", "vancomycin_thomson2009", "vancomycin_zhao2021"]
    twins = [tb.fit(tb.load_spec(n), patient, seed=i) for i, n in enumerate(names)]
    fast = compare(twins, bma=True, bma_method="importance", refit=False, seed=1).table
    smc = compare(twins, bma=True, bma_method="smc", refit=False, seed=1).table.sel(twin=fast.twin)
    assert np.all(fast["log_ml_ess"] > 500)
    se = np.hypot(fast["log_ml_se"], smc["log_ml_se"])
    assert np.all(np.abs(fast["log_ml"] - smc["log_ml"]) < 4 * se + 0.05), (
        fast["log_ml"],
        smc["log_ml"],
    )
    np.testing.assert_allclose(fast["bma"], smc["bma"], atol=0.05)
