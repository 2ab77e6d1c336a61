"""Leave-future-out CV: PSIS-LFO vs exact refits, vs arviz-stats' lfo_cv, and CRPS vs closed forms."""

import warnings
from dataclasses import replace

import arviz_stats as azs
import numpy as np
import pytest
from scipy.stats import norm

from twinbayes import Patient, fit, load_spec
from twinbayes.comparison import over_time
from twinbayes.comparison.lfo import lfo, time_points, weighted_crps
from twinbayes.comparison.wrapper import TwinLFOWrapper
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.inputs.library import data_path

SETTINGS = dict(draws=1000, tune=700, chains=2, ladder=NO_LADDER)


@pytest.fixture(scope="module")
def tumour_twin():
    """Gompertz growth of LLC mouse 1 (12 volumes, no doses)."""
    patient = Patient.from_csv(data_path("benzekry_llc_tumor_volume.csv"), subject=1)
    return fit(load_spec("tumor_gompertz"), patient, seed=1, progress=False, **SETTINGS)


@pytest.fixture(scope="module")
def pk_twin():
    """One-compartment oral twin of Theophylline subject 1 (one dose, 11 concentrations)."""
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    return fit(load_spec("pk_1cmt_oral"), patient, seed=1, progress=False, **SETTINGS)


def test_crps_of_a_normal_sample_matches_the_closed_form():
    # Gneiting & Raftery (2007) eq. 5: CRPS(N(mu, s), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]
    rng = np.random.default_rng(0)
    mu, s, y = 1.5, 2.0, 3.1
    z = (y - mu) / s
    exact = s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    draws = rng.normal(mu, s, 200_000)
    assert abs(weighted_crps(draws, y) - exact) < 0.01 * exact


def test_weighted_crps_equals_the_double_sum():
    rng = np.random.default_rng(1)
    x, lw = rng.gamma(2.0, size=300), rng.normal(size=300)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    y = 1.2
    brute = np.sum(w * np.abs(x - y)) - 0.5 * np.sum(
        w[:, None] * w[None, :] * np.abs(x[:, None] - x[None, :])
    )
    assert weighted_crps(x, y, lw) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("method", ["approx", "exact"])
def test_lfo_equals_arviz_stats_lfo_cv_on_a_series_without_doses(tumour_twin, method):
    ours = lfo(tumour_twin, min_points=4, method=method, seed=3, **SETTINGS)
    wrapper = TwinLFOWrapper(tumour_twin, seed=3, **SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = azs.lfo_cv(
            wrapper.idata_orig,
            wrapper,
            min_observations=4,
            forecast_horizon=1,
            pointwise=True,
            method=method,
        )
    np.testing.assert_allclose(ours["elpd_i"].values, ref.elpd_i.values, rtol=1e-10)
    assert ours.attrs["n_refits"] == ref.n_refits - (
        method == "exact"
    )  # arviz counts the first fit when exact
    if method == "approx":
        np.testing.assert_allclose(ours["pareto_k"].values, ref.pareto_k.values, rtol=1e-10)
        assert list(ours.origin.values[ours["refit"].values][1:]) == list(ref.refits)
    n = ours.sizes["origin"]  # arviz's SE uses the n-denominator variance, ours n-1 (as our LOO)
    assert ours.attrs["se"] * np.sqrt((n - 1) / n) == pytest.approx(ref.se, rel=1e-10)


@pytest.mark.parametrize("which", ["pk_twin", "tumour_twin"])
def test_approximate_lfo_agrees_with_exact_lfo_within_its_se(which, request):
    twin = request.getfixturevalue(which)
    approx = lfo(twin, min_points=4, seed=5, **SETTINGS)
    exact = lfo(twin, min_points=4, method="exact", seed=5, **SETTINGS)
    n_origins = exact.sizes["origin"]
    assert exact.attrs["n_refits"] == n_origins - 1 and exact["refit"].all()
    assert 0 <= approx.attrs["n_refits"] < n_origins - 1  # PSIS saved refits
    assert abs(approx.attrs["elpd"] - exact.attrs["elpd"]) < exact.attrs["se"]
    print(
        f"{twin.name}: exact {exact.attrs['elpd']:.2f} +- {exact.attrs['se']:.2f} ({n_origins} fits), "
        f"approx {approx.attrs['elpd']:.2f} ({approx.attrs['n_refits'] + 1} fits)"
    )


def test_two_step_forecasts_score_joint_blocks(pk_twin):
    one = lfo(pk_twin, min_points=5, method="exact", seed=2, **SETTINGS)
    two = lfo(pk_twin, min_points=5, horizon=2, method="exact", seed=2, **SETTINGS)
    assert two.sizes["origin"] == one.sizes["origin"] - 1
    # a joint density of two points is below either point's (densities of concentrations < 1)
    assert (two["elpd_i"].values < one["elpd_i"].values[:-1] + 2.0).all()
    assert two.attrs["p_lfo"] > 0


def test_observables_at_one_time_form_one_time_point(pk_twin):
    design = replace(
        pk_twin.design, times={"a": np.array([1.0, 2.0, 4.0]), "b": np.array([2.0, 4.0, 8.0])}
    )
    times, point = time_points(design)
    np.testing.assert_array_equal(times, [1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(point, [0, 1, 2, 1, 2, 3])


def test_bad_windows_are_refused(pk_twin):
    with pytest.raises(ValueError, match="lower min_points"):
        lfo(pk_twin, min_points=11)
    with pytest.raises(ValueError, match="approx"):
        lfo(pk_twin, method="psis")


def test_over_time_forecast_densities_are_the_exact_lfo_terms(tumour_twin):
    other = fit(load_spec("tumor_exponential"), tumour_twin.patient, seed=2, **SETTINGS)
    history = over_time([tumour_twin, other], min_points=4, seed=3, **SETTINGS)
    for i, twin in enumerate([tumour_twin, other]):
        exact = lfo(twin, min_points=4, method="exact", seed=3, **SETTINGS)
        np.testing.assert_allclose(
            history["lpd_next"].values[:, i], exact["elpd_i"].values, rtol=1e-12
        )
    for var in ("loo_weight", "pseudo_bma_weight"):
        np.testing.assert_allclose(history[var].sum("twin"), 1.0, atol=1e-6)
    np.testing.assert_allclose(history["lfo_weight"].values[2:].sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(history["lfo_weight"].values[:2]).all()
    share = history["between_share"].sel(observable="volume")
    assert ((share >= 0) & (share <= 1)).all() and (share.sel(weighting="equal") > 0).all()
    # each refit's gate verdict and Pareto k travel with it (issue 36, item 6)
    assert history["refit_converged"].dtype == bool and history["refit_converged"].shape == (
        history.sizes["origin"],
        2,
    )
    assert np.all(np.isfinite(history["max_pareto_k"].values))
    failed = ~history["refit_converged"].values
    assert all(
        bool(r) == f for r, f in zip(history["refit_reasons"].values.ravel(), failed.ravel())
    )


def test_over_time_share_is_the_share_of_noise_free_means(tumour_twin):
    """The share at an origin is between_share of each refit's noise-free mean at the next time
    point (how disagreement computes it), recomputed here from refits with the same seed."""
    from twinbayes.comparison.lfo import time_points
    from twinbayes.decisions.twin_disagreement import between_share
    from twinbayes.fitting.twin import Refitter
    from twinbayes.model.twin_model import TwinModel

    other = fit(load_spec("tumor_exponential"), tumour_twin.patient, seed=2, **SETTINGS)
    twins = [tumour_twin, other]
    history = over_time(twins, min_points=4, seed=3, **SETTINGS)
    _, point_of_obs = time_points(tumour_twin.design)
    origin = int(history.origin.values[0])
    means = []
    for twin in twins:
        params, _ = Refitter(twin, **SETTINGS).posterior(point_of_obs >= origin, 3 + origin)
        nxt = twin.design.split(point_of_obs == origin)[1]
        means.append(TwinModel.of(twin.spec).means(params, nxt)["volume"][:, 0])
    expected = float(between_share(means, np.array([0.5, 0.5])))
    got = float(history["between_share"].sel(observable="volume", weighting="equal")[0])
    assert got == pytest.approx(expected, rel=1e-12)
