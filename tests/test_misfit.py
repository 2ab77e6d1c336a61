"""Posterior predictive checks (issue 43): p-values against a closed form, the power of the trend
check against its closed form, and the checks of a fitted twin that misses a drift."""

import numpy as np
import pytest
from scipy.stats import norm

from twinbayes.fitting.misfit import STATISTICS, ppp_values

T = np.linspace(0.0, 6.0, 7)  # seven levels
DRAWS = 4000


def _slope_weights(t: np.ndarray) -> np.ndarray:
    """``c`` with ``T(z) = c'z`` the trend statistic of misfit.py (time in units of its SD)."""
    tc = (t - t.mean()) / t.std()
    return tc / (tc**2).sum()


def _conjugate_fit(y, X, prior_sd, rng):
    """Exact posterior draws of a Gaussian linear model with known sigma = 1 (conjugate normal
    prior), the standardised residuals of y and of replicates under the same draws."""
    precision = X.T @ X + np.eye(X.shape[1]) / prior_sd**2
    V = np.linalg.inv(precision)
    m = V @ X.T @ y
    theta = rng.multivariate_normal(m, V, size=DRAWS)
    mu = theta @ X.T
    y_rep = mu + rng.standard_normal(mu.shape)
    return y - mu, y_rep - mu, m, V


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_trend_p_value_matches_its_closed_form(seed):
    """T_rep - T = c'(X theta - y) + c'eps is normal given y: mean c'(X m - y), variance
    c'X V X'c + c'c, so Pr(T_rep >= T) = Phi(mean / sd) (two-sided: twice the smaller tail)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones_like(T), T])
    y = X @ [2.0, -0.3] + 0.4 * (T - 3) ** 2 / 3 + rng.standard_normal(len(T))  # curved data
    z, z_rep, m, V = _conjugate_fit(y, X, prior_sd=3.0, rng=rng)
    c = _slope_weights(T)
    mean, sd = c @ (X @ m - y), np.sqrt(c @ X @ V @ X.T @ c + c @ c)
    upper = norm.cdf(mean / sd)
    exact = min(1.0, 2 * min(upper, 1 - upper))
    p, mcse = ppp_values(z, z_rep, T)["trend over time"]
    assert abs(p - exact) < 4 * mcse + 1e-12, (p, exact, mcse)


def _trend_power(drift: float, alpha: float, n_sets: int, rng) -> float:
    """Share of data sets with a linear drift whose trend check fires, for an intercept-only twin."""
    X = np.ones((len(T), 1))
    fired = 0
    for _ in range(n_sets):
        y = 1.0 + drift * (T - T.mean()) / np.ptp(T) + rng.standard_normal(len(T))
        z, z_rep, _, _ = _conjugate_fit(y, X, prior_sd=10.0, rng=rng)
        fired += ppp_values(z, z_rep, T, STATISTICS[:1])["trend over time"][0] < alpha
    return fired / n_sets


def _closed_form_power(drift: float, alpha: float) -> float:
    """For an intercept-only twin, T = c'y (c sums to 0) and T_rep = c'eps: the check is the
    z-test of the slope, with power Phi(d - z) + Phi(-d - z), d = drift c't / |c|."""
    c = _slope_weights(T)
    d = drift * (c @ (T - T.mean()) / np.ptp(T)) / np.sqrt(c @ c)
    z = norm.ppf(1 - alpha / 2)
    return norm.cdf(d - z) + norm.cdf(-d - z)


@pytest.mark.parametrize(
    ("drift", "stated"),
    [(0.0, 0.01), (2.0, 0.21), (4.0, 0.83)],
    ids=["no drift", "drift of 2 SD", "drift of 4 SD"],
)
def test_the_trend_check_detects_a_drift_at_the_stated_power(drift, stated):
    """Seven levels, a linear drift of ``drift`` residual SDs over the sampling window, alpha
    0.01: the power docs/when-every-twin-is-wrong.md states (its closed form, rounded), within
    3 binomial SE over 300 simulated patients."""
    assert abs(_closed_form_power(drift, 0.01) - stated) < 0.005
    power = _trend_power(drift, 0.01, 300, np.random.default_rng(11))
    se = np.sqrt(max(stated * (1 - stated), 0.01) / 300)
    assert abs(power - stated) < 3 * se, (power, stated)


def test_runs_and_largest_residual_see_what_they_should():
    rng = np.random.default_rng(5)
    n = 8
    t = np.arange(n, dtype=float)
    z_rep = rng.standard_normal((DRAWS, n))
    runs = np.array([1.0, 1.2, 0.8, 0.9, -1.0, -1.1, -0.9, -1.2])  # two long runs
    p_runs, _ = ppp_values(np.tile(runs, (DRAWS, 1)), z_rep, t)["runs of residual signs"]
    alternating = np.array([1.0, -1, 1, -1, 1, -1, 1, -1]) * 0.8
    p_alt, _ = ppp_values(np.tile(alternating, (DRAWS, 1)), z_rep, t)["runs of residual signs"]
    assert p_runs < 0.1 < p_alt
    outlier = np.zeros(n)
    outlier[3] = 5.0
    p_out, _ = ppp_values(np.tile(outlier, (DRAWS, 1)), z_rep, t)["largest standardised residual"]
    assert p_out < 0.01
    assert set(ppp_values(z_rep[:, :2], z_rep[:, :2], t[:2])) == {"largest standardised residual"}


def test_a_twin_fitted_to_its_own_simulated_data_raises_no_misfit():
    """Checks of a fitted twin are stored with its predictive draws and read back; the twin
    that simulated the data raises no misfit warning and passes the LOO-PIT test."""
    from test_compare import QUICK

    from twinbayes import fit, load_spec, simulate_patient
    from twinbayes.comparison import compare
    from twinbayes.fitting.misfit import predictive_checks

    spec = load_spec("pk_1cmt_iv")
    times = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    truth = {"CL": 5.0, "V": 10.0, "sigma_add": 0.2, "sigma_prop": 0.1}
    patient = simulate_patient(spec, truth, times, {"iv": ([0.0], [100.0])}, seed=7)
    twin = fit(spec, patient, seed=3, **QUICK)
    checks = predictive_checks(twin)
    assert {c.statistic for c in checks} == {s.name for s in STATISTICS}
    assert all(0 <= c.p_value <= 1 and 0 < c.mcse < 0.05 for c in checks)
    assert not [w for w in twin.warnings if w.startswith("misfit")], twin.warnings
    other = fit(load_spec("pk_2cmt_iv"), patient, seed=4, **QUICK)
    table = compare([twin, other], refit=False, include_unconverged=True).table
    assert 0.01 < float(table.loo_pit_p.sel(twin="pk_1cmt_iv")) <= 1
