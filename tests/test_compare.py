"""Comparison and weights: against ArviZ, exact LOO, analytic marginal likelihood, flags."""

import arviz as az
import numpy as np
import pymc as pm
import pytest
from scipy.stats import multivariate_normal, norm

from twinbayes import load_spec
from twinbayes.comparison import (
    compare,
    k_threshold,
    kfold,
    log_marginal_likelihood,
    loo,
    pseudo_bma_plus_weights,
    stacking_weights,
)
from twinbayes.comparison.ranking import _row_notes
from twinbayes.decisions.ensemble import average_predictive
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.fitting.twin import Refitter, fit
from twinbayes.model.simulate import simulate_patient

QUICK = dict(draws=500, tune=500, chains=2, ladder=NO_LADDER)  # short chains: no escalation


@pytest.fixture(scope="module")
def theoph_twins(theoph4):
    return [
        fit(load_spec(n), theoph4, seed=i, **QUICK)
        for i, n in enumerate(["pk_1cmt_oral", "pk_2cmt_oral", "pk_1cmt_oral_lag"])
    ]


def test_psis_loo_equals_arviz(theoph_twins):
    for twin in theoph_twins:
        ours = loo(twin, refit=False)
        ref = az.loo(twin.idata, pointwise=True)
        assert abs(ours.attrs["elpd"] - ref.elpd) < 1e-8
        assert abs(ours.attrs["se"] - ref.se) < 1e-8
        assert abs(ours.attrs["p_loo"] - ref.p) < 1e-8
        np.testing.assert_allclose(ours["pareto_k"].values, ref.pareto_k.values, rtol=0, atol=1e-8)
        np.testing.assert_allclose(ours["elpd_i"].values, ref.elpd_i.values, rtol=0, atol=1e-8)
        assert ours.attrs["threshold"] == pytest.approx(ref.good_k)


def test_weights_agree_with_arviz_compare(theoph_twins):
    res = {t.name: az.loo(t.idata, pointwise=True) for t in theoph_twins}
    elpd_i = np.stack([res[t.name].elpd_i.values for t in theoph_twins], axis=1)
    for method, ours in [
        ("stacking", stacking_weights(elpd_i)),
        ("bb-pseudo-bma", pseudo_bma_plus_weights(elpd_i, seed=124)[0]),
    ]:
        table = az.compare(res, method=method, round_to="none")
        theirs = np.array([table.loc[t.name, "weight"] for t in theoph_twins])
        np.testing.assert_allclose(ours, theirs, atol=1e-10 if method != "stacking" else 2e-3)
        assert ours.sum() == pytest.approx(1.0)
    comp = compare(theoph_twins, include_unconverged=True, refit=False, seed=124)
    assert comp.table.stacking.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        [comp.weights_of("stacking")[t.name] for t in theoph_twins],
        stacking_weights(elpd_i),
        atol=1e-12,
    )
    assert comp.weights == comp.weights_of("bayes_stacking")  # the default (issue 36)


def test_stacking_picks_the_only_predictive_twin():
    rng = np.random.default_rng(0)
    good = norm.logpdf(rng.normal(size=50))
    bad = good - 5.0
    w = stacking_weights(np.stack([bad, good, bad], axis=1))
    np.testing.assert_allclose(w, [0, 1, 0], atol=1e-6)


@pytest.fixture(scope="module")
def iv_twin():
    spec = load_spec("pk_1cmt_iv")
    times = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    patient = simulate_patient(
        spec,
        {"CL": 5.0, "V": 10.0, "sigma_add": 0.2, "sigma_prop": 0.1},
        times,
        {"iv": ([0.0], [100.0])},
        seed=7,
    )
    return fit(spec, patient, seed=3, **QUICK)


def test_exact_loo_by_refits_agrees_with_psis(iv_twin):
    psis = loo(iv_twin, refit=False)
    exact = kfold(
        iv_twin, k=iv_twin.design.n_obs, seed=1, **QUICK
    )  # one observation per fold: exact LOO
    assert exact.attrs["k"] == 8
    assert abs(psis.attrs["elpd"] - exact.attrs["elpd"]) < 2 * psis.attrs["se"]


def test_without_refits_high_k_observations_are_named_in_the_notes(iv_twin):
    values = iv_twin.design.values["concentration"].copy()
    values[0] *= 2.5  # the outlier of the test below: high Pareto k
    design = iv_twin.design.with_values({"concentration": values})
    twin = fit(iv_twin.spec, iv_twin.patient, design=design, seed=3, **QUICK)
    res = loo(twin, refit=False)
    assert res.attrs["n_high_k"] >= 1 and (res["method"].values == "psis").all()
    (note,) = _row_notes([twin], [res], include_unconverged=False)
    assert f"{res.attrs['n_high_k']} observation(s) with Pareto k > " in note
    assert "not refitted: their PSIS elpd is unreliable" in note


def test_high_k_observation_is_refitted_exactly(iv_twin):
    # an outlier that the posterior depends on strongly: its Pareto k is high
    values = iv_twin.design.values["concentration"].copy()
    values[0] *= 2.5
    design = iv_twin.design.with_values({"concentration": values})
    twin = fit(iv_twin.spec, iv_twin.patient, design=design, seed=3, **QUICK)
    res = loo(twin, seed=5, **QUICK)
    assert res["pareto_k"].values[0] > k_threshold(1000)
    assert res["method"].values[0] == "refit" and res.attrs["refits"] >= 1
    # the exact value, recomputed here with scipy from the refit's posterior (observation 0 left out)
    hold = np.zeros(8, bool)
    hold[0] = True
    post, _ = Refitter(twin, **QUICK).posterior(hold, seed=5 + 1 + 0)
    mu = 100.0 / post["V"] * np.exp(-post["CL"] / post["V"] * 0.25)
    sd = np.sqrt(post["sigma_add"] ** 2 + (post["sigma_prop"] * mu) ** 2)
    expected = np.log(np.mean(norm.pdf(values[0], mu, sd)))
    assert res["elpd_i"].values[0] == pytest.approx(expected, rel=1e-9)
    assert (
        abs(res["elpd_i"].values[0] - loo(twin, refit=False)["elpd_i"].values[0]) > 0.1
    )  # PSIS was off


def test_weighted_model_leaves_observations_out_exactly(iv_twin):
    """Refits use one compiled model with 0/1 observation weights: its log density equals the reduced model's."""
    from twinbayes.fitting.twin import build_model, build_weighted_model

    keep = np.ones(8, bool)
    keep[[0, 5]] = False
    reduced = build_model(iv_twin.spec, iv_twin.design.subset({"concentration": keep}))
    weighted = build_weighted_model(iv_twin.spec, iv_twin.design)
    weighted.set_data("obs_weight", keep.astype(float))
    f_red, f_w = reduced.compile_logp(), weighted.compile_logp()
    rng = np.random.default_rng(0)
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in reduced.initial_point().items()}
        assert f_w(point) == pytest.approx(f_red(point), rel=1e-12)


def test_smc_marginal_likelihood_matches_conjugate_normal():
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 2.0, 20)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 3.0)
        pm.Normal("y", mu, 2.0, observed=y)
    est, se = log_marginal_likelihood(model, draws=2000, chains=4, seed=1)
    cov = 4.0 * np.eye(20) + 9.0 * np.ones((20, 20))
    exact = multivariate_normal(np.zeros(20), cov).logpdf(y)
    assert 0 < se < 0.1
    assert abs(est - exact) < 3 * se


def test_duplicates_flagged_and_unconverged_excluded(theoph4, spec_text):
    twin_a, twin_b = (fit(load_spec("pk_1cmt_oral"), theoph4, seed=s) for s in (98, 99))
    renamed = load_spec(
        "team_b.toml", text=spec_text(**{'name = "pk_1cmt_oral"': 'name = "team_b_1cmt"'})
    )
    twin_c = fit(renamed, theoph4, seed=100)
    broken = fit(
        load_spec("pk_2cmt_oral"), theoph4, seed=1, draws=40, tune=20, chains=2, ladder=NO_LADDER
    )
    assert not broken.converged
    good = [t for t in (twin_a, twin_b) if t.converged]
    assert len(good) == 2, [t.reasons for t in (twin_a, twin_b)]
    comp = compare([twin_a, twin_b, broken, twin_c], refit=False)
    assert any("same spec" in n for n in comp.notes)
    assert any("team_b_1cmt" in n and "near-duplicates" in n for n in comp.notes), comp.notes
    assert not any("pk_2cmt_oral" in n and "duplicate" in n for n in comp.notes)
    row = comp.table.sel(twin="pk_2cmt_oral")
    assert not bool(row.included) and float(row.stacking) == 0 and float(row.pseudo_bma) == 0
    assert "failed convergence gate" in str(row.note.values) and "ESS" in str(row.note.values)
    assert comp.table.stacking.sum() == pytest.approx(1.0)


def test_average_predictive_is_the_weighted_mixture(theoph_twins):
    a, b = theoph_twins[:2]
    times = np.array([1.0, 12.0, 48.0])  # 48 h lies beyond the data
    mix = average_predictive([a, b], {a.name: 0.3, b.name: 0.7}, times, n_draws=4000, seed=1)
    share = np.mean(mix["source"].values == a.name)
    assert abs(share - 0.3) < 3 * np.sqrt(0.3 * 0.7 / 4000)
    assert mix["ensemble"].shape == (4000, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        average_predictive([a, b], {a.name: 0.3, b.name: 0.3}, times)


def test_selection_bias_check_agrees_with_arviz():
    import warnings
    from types import SimpleNamespace

    from arviz_stats.loo.compare import _order_stat_check

    from twinbayes.comparison import _selection_bias_note

    triggered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        k = int(rng.integers(12, 20))
        elpd_i = rng.normal(-1, 0.3, (25, k))
        elpd_i[:, 0] += rng.uniform(0, 1.0) if seed % 3 == 0 else 0.0
        names = [f"m{i}" for i in range(k)]
        order = [names[i] for i in np.argsort(-elpd_i.sum(axis=0))]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _order_stat_check(
                {n: SimpleNamespace(elpd_i=elpd_i[:, i]) for i, n in enumerate(names)}, order, False
            )
        arviz_warns = any("due to chance" in str(w.message) for w in caught)
        assert (_selection_bias_note(elpd_i, names) is not None) == arviz_warns, seed
        triggered += arviz_warns
    assert 5 < triggered < 35  # both outcomes occur
    assert _selection_bias_note(np.zeros((10, 3)), ["a", "b", "c"]) is None  # few twins: no check


def test_grouped_kfold_keeps_groups_together(iv_twin):
    groups = ["early"] * 4 + ["late"] * 4
    res = kfold(iv_twin, k=2, groups=groups, seed=0, **QUICK)
    folds = res["fold"].values
    assert len(set(folds[:4])) == 1 and len(set(folds[4:])) == 1 and folds[0] != folds[4]
    assert np.all(np.isfinite(res["elpd_i"].values)) and res.attrs["k"] == 2


def test_scores_made_ahead_in_a_thread_give_the_same_comparison(theoph_twins):
    """What a study does (each twin scored in a background thread as soon as it is fitted) gives
    the comparison's bits; scores made with other settings are refused."""
    import xarray as xr

    from twinbayes.comparison.scoring import Scoring
    from twinbayes.run.score_ahead import ScoreAhead

    kwargs = dict(include_unconverged=True, seed=7, threshold=0.5, max_refits=2)
    with ScoreAhead(Scoring.of(kwargs)) as ahead:
        for twin in theoph_twins:
            ahead.submit(twin)
        scores = ahead.scores(theoph_twins)
    assert sum(s.attrs["refits"] for s in scores) >= 1  # exact refits ran in the thread
    made_ahead = compare(theoph_twins, **kwargs, scores=scores)
    here = compare(theoph_twins, **kwargs)
    xr.testing.assert_identical(made_ahead.table, here.table)
    xr.testing.assert_identical(made_ahead.pointwise, here.pointwise)
    with pytest.raises(ValueError, match="other settings"):
        compare(theoph_twins, **{**kwargs, "seed": 8}, scores=scores)
    with pytest.raises(ValueError, match="other settings"):
        compare(theoph_twins, **kwargs, scores=scores[::-1])


@pytest.mark.parametrize("n, gap", [(7, 1.0), (40, 0.1)])
def test_bayesian_stacking_weights_match_quadrature_of_their_posterior(n, gap):
    """Two twins: the posterior of w under a uniform prior is one-dimensional,
    p(w | y) ~ prod_i (w p_i1 + (1 - w) p_i2); its mean and 5-95 % quantiles by quadrature on a
    fine grid are the independent reference for the Gibbs sampler's.  On 7 points where one twin
    is better everywhere, stacking says 1.00 and the posterior mean about 0.85."""
    from twinbayes.comparison.weights import bayesian_stacking_weights, stacking_weights

    rng = np.random.default_rng(n)
    elpd = np.stack([rng.normal(-1.0, 0.3, n), rng.normal(-1.0 - gap, 0.3, n)], axis=1)
    mean, draws = bayesian_stacking_weights(elpd, draws=4000, seed=1)
    grid = np.linspace(1e-6, 1 - 1e-6, 20001)
    log_post = np.log(np.outer(grid, np.exp(elpd[:, 0])) + np.outer(1 - grid, np.exp(elpd[:, 1])))
    post = np.exp(log_post.sum(axis=1) - log_post.sum(axis=1).max())
    cdf = np.cumsum(post) / post.sum()
    ref_mean = float(np.sum(grid * post) / post.sum())
    mcse = draws[:, 0].std() / np.sqrt(4000 / 20)  # a generous bound on the Gibbs chain's ESS
    assert abs(mean[0] - ref_mean) < 3 * mcse + 1e-3, (mean, ref_mean)
    for q in (0.05, 0.95):
        assert abs(np.quantile(draws[:, 0], q) - grid[np.searchsorted(cdf, q)]) < 0.03
    if n == 7:
        assert stacking_weights(elpd)[0] > 0.999 and 0.7 < mean[0] < 0.95
