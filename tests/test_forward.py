"""Forward widening (issue 43): the discrepancy rate against independent references, the Brownian
widening's moments, and a real tumour whose exponential twin over-forecasts."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime

from twinbayes import Patient, fit, load_spec
from twinbayes.ensemble import predictive_draws
from twinbayes.forward import Discrepancy, fit_rate, forward_discrepancy
from twinbayes.ladder import NO_LADDER
from twinbayes.library import data_path
from twinbayes.qoi import Target, ValueAt
from twinbayes.scenarios import Scenario
from twinbayes.twin_disagreement import Forward, disagreement


def _origins(rng, n_origins, tau2, shared=0.01, noise=0.02):
    """Errors of ``n_origins`` origins, 4 forecasts each: shared parameter error + noise + walk."""
    errors, covs, horizons, origins = [], [], [], []
    for o in range(n_origins):
        h = np.sort(rng.uniform(1.0, 48.0, 4))
        c = shared * np.ones((4, 4)) + noise * np.eye(4)
        sigma = c + tau2 * np.minimum.outer(h, h)
        errors.append(rng.multivariate_normal(np.zeros(4), sigma))
        covs.append(c)
        horizons.append(h)
        origins.append(np.full(4, o))
    cov = np.zeros((4 * n_origins, 4 * n_origins))
    for o, c in enumerate(covs):
        cov[4 * o : 4 * o + 4, 4 * o : 4 * o + 4] = c
    return np.concatenate(errors), cov, np.concatenate(horizons), np.concatenate(origins)


def _minus_loglik(tau2, errors, cov, horizons, origins):
    """The composite likelihood written out independently: scipy's multivariate normal per origin."""
    from scipy.stats import multivariate_normal

    total = 0.0
    for o in np.unique(origins):
        at = origins == o
        h = horizons[at]
        sigma = cov[np.ix_(at, at)] + tau2 * np.minimum.outer(h, h)
        total -= multivariate_normal(np.zeros(at.sum()), sigma).logpdf(errors[at])
    return total


def test_the_rate_is_the_maximum_of_the_composite_likelihood_and_recovers_the_truth():
    rng = np.random.default_rng(43)
    args = _origins(rng, 300, tau2=0.003)
    rate = fit_rate(*args)
    grid = np.linspace(0.0, 0.008, 801)
    brute = grid[np.argmin([_minus_loglik(t, *args) for t in grid])]
    assert rate == pytest.approx(brute, abs=2e-5)
    # the sandwich-free SE of a composite likelihood over independent origins is the Fisher SE
    step = 1e-5
    curvature = (
        approx_fprime([rate + step], lambda t: _minus_loglik(t[0], *args), 1e-6)[0]
        - approx_fprime([rate - step], lambda t: _minus_loglik(t[0], *args), 1e-6)[0]
    ) / (2 * step)
    se = 1.0 / np.sqrt(curvature)
    assert abs(rate - 0.003) < 3 * se, (rate, se)


def test_errors_the_forecasts_expected_give_no_widening():
    rng = np.random.default_rng(7)
    errors, cov, horizons, origins = _origins(rng, 200, tau2=0.0)
    assert fit_rate(errors, cov, horizons, origins) < 0.0003  # 3 SE at 200 origins
    assert fit_rate(np.zeros(4), np.eye(4) * 0.02, np.arange(1.0, 5.0), np.zeros(4)) == 0.0
    assert np.isnan(fit_rate(np.full(3, np.nan), np.eye(3), np.ones(3), np.zeros(3)))


def test_errors_of_one_sign_that_grow_are_a_discrepancy_even_when_each_is_small():
    """Each error is within one predictive SD, but they drift together: the random walk explains
    it, independent errors would not."""
    h = np.array([6.0, 12.0, 24.0, 36.0])
    v = np.full(4, 0.04)
    errors = -np.array([0.05, 0.09, 0.15, 0.19])
    assert np.all(errors**2 < v)
    assert fit_rate(errors, np.diag(v), h, np.zeros(4)) > 0.0


def test_widening_adds_a_brownian_path_after_the_last_level():
    d = Discrepancy("t", 0.01, 40.0, np.array([10.0]), np.zeros(1), np.zeros(1, int))
    grid = np.linspace(0.0, 100.0, 51)
    widened = d.widen(grid, np.ones((40000, len(grid))), np.random.default_rng(1))
    logs = np.log(widened)
    assert np.all(logs[:, grid <= 40.0] == 0.0)
    var = logs.var(axis=0)
    expected = 0.01 * np.maximum(grid - 40.0, 0.0)
    after = grid > 40.0
    # sample variance of 40 000 normal draws: relative SD sqrt(2 / n) = 0.7 %
    assert np.allclose(var[after], expected[after], rtol=0.04)
    i, j = np.searchsorted(grid, [60.0, 90.0])
    assert np.cov(logs[:, i], logs[:, j])[0, 1] == pytest.approx(0.01 * 20.0, rel=0.05)
    assert np.allclose(d.sd_at(grid) ** 2, expected)
    same = Discrepancy("t", 0.0, 40.0, np.zeros(0), np.zeros(0), np.zeros(0, int))
    ones = np.ones((3, len(grid)))
    assert same.widen(grid, ones, np.random.default_rng(1)) is ones


SETTINGS = dict(draws=1000, tune=700, chains=2, ladder=NO_LADDER, progress=False)


@pytest.fixture(scope="module")
def early_tumour():
    """LLC mouse 1 (Benzekry et al. 2014): its first 8 volumes as a patient, the later 4 held out."""
    d = pd.read_csv(data_path("benzekry_llc_tumor_volume.csv"))
    d = d[d.subject == 1]
    early, late = d.iloc[:8], d.iloc[8:]
    records = [(r.time, r.name, r.value, r.unit) for r in early.itertuples()]
    return Patient.from_records(records, [], time_unit="d"), late


def _covered(draws: np.ndarray, values: np.ndarray) -> int:
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return int(np.sum((values >= lo) & (values <= hi)))


def test_an_exponential_twin_of_a_decelerating_tumour_is_widened_and_then_covers(early_tumour):
    """Real data: tumours decelerate, an exponential twin over-forecasts with narrow bands.  Its
    own forecasts of the early volumes say so; the widened bands cover the held-out volumes."""
    patient, late = early_tumour
    twin = fit(load_spec("tumor_exponential"), patient, seed=1, **SETTINGS)
    found = forward_discrepancy(twin, seed=1)
    assert found.rate > 0.05  # log-variance per day
    plain = predictive_draws(twin, late.time.values, mean=True).values
    widened = found.widen(late.time.values, plain, np.random.default_rng(0))
    assert _covered(plain, late.value.values) == 0
    assert _covered(widened, late.value.values) >= 3
    gompertz = fit(load_spec("tumor_gompertz"), patient, seed=1, **SETTINGS)
    assert forward_discrepancy(gompertz, seed=1).rate == 0.0


def test_disagreement_keeps_the_plain_posterior_and_records_the_widening(early_tumour):
    patient, _ = early_tumour
    twins = [
        fit(load_spec(n), patient, seed=1, **SETTINGS)
        for n in ("tumor_exponential", "tumor_gompertz")
    ]
    target = Target(ValueAt(30.0, name="V(day 30)"), upper=4000.0)
    kwargs = dict(qois=[target.qoi], targets=[target], seed=3)
    args = (twins, {t.name: 0.5 for t in twins}, [Scenario("untreated", time_unit="d")])
    grid = np.linspace(0.0, 30.0, 31)
    plain = disagreement(*args, grid, **kwargs).data
    wide = disagreement(*args, grid, forward=Forward(seed=1), **kwargs).data
    assert np.array_equal(wide.p_meets_plain.values, plain.p_meets.values)
    assert "p_meets_plain" not in plain and plain.attrs["forward"] == ""
    record = __import__("json").loads(wide.attrs["forward"])
    assert record["twins"]["tumor_exponential"]["rate"] > 0.0
    assert record["twins"]["tumor_gompertz"]["rate"] == 0.0
    exp = dict(source="tumor_exponential", scenario="untreated", target=target.name)
    # the exponential twin is sure the tumour passes 4000 mm3 by day 30; widened, less so
    assert float(plain.p_meets.sel(**exp)) < float(wide.p_meets.sel(**exp))
    gom = dict(exp, source="tumor_gompertz")
    assert float(plain.p_meets.sel(**gom)) == float(wide.p_meets.sel(**gom))
