"""Scenarios, QoIs and the disagreement between twins: known answers and Monte Carlo errors.

Most tests use twins with synthetic posteriors (draws from known distributions,
optionally autocorrelated like MCMC chains), so the right answers are known.
"""

import dataclasses

import numpy as np
import pytest
import xarray as xr

from twinbayes import Patient, load_spec
from twinbayes.decisions.twin_disagreement import disagreement, weighted_quantile
from twinbayes.dynamics import solve_reference, state_amounts
from twinbayes.dynamics.design import design_for
from twinbayes.fitting.diagnostics import Diagnostics, Gate
from twinbayes.fitting.twin import Twin
from twinbayes.spec import SpecError
from twinbayes.spec.expr import ExpressionError
from twinbayes.spec.qoi import AUC, Cmax, Custom, StaysInRange, Target, TimeInRange, Tmax, ValueAt
from twinbayes.spec.scenarios import Dose, Scenario

SPEC = load_spec("pk_1cmt_iv")
PATIENT = Patient.from_records([(1.0, "concentration", 5.0, "mg/L")], [(0.0, "iv", 100.0, "mg")])
GRID = np.linspace(0, 24, 241)
SCENARIOS = [
    Scenario.regimen("100 mg q12h", 100, "iv", interval=12, n_doses=2),
    Scenario.regimen("200 mg once", 200, "iv"),
]


def synthetic_twin(name, cl_median, cl_sd=0.1, v=10.0, seed=0, chains=4, draws=1000, phi=0.0):
    """A twin whose posterior is log CL ~ AR(1) chains with stationary N(log cl_median, cl_sd^2)."""
    rng = np.random.default_rng(seed)
    z = np.empty((chains, draws))
    z[:, 0] = rng.normal(size=chains)
    for i in range(1, draws):
        z[:, i] = phi * z[:, i - 1] + np.sqrt(1 - phi**2) * rng.normal(size=chains)
    post = xr.Dataset(
        {
            "CL": (("chain", "draw"), cl_median * np.exp(cl_sd * z)),
            "V": (("chain", "draw"), np.full((chains, draws), v)),
            "sigma_add": (("chain", "draw"), np.full((chains, draws), 0.1)),
            "sigma_prop": (("chain", "draw"), np.full((chains, draws), 0.1)),
        }
    )
    return twin_with_posterior(dataclasses.replace(SPEC, name=name), PATIENT, post)


def twin_with_posterior(spec, patient, post: xr.Dataset) -> Twin:
    """A converged twin of ``spec`` and ``patient`` whose posterior is ``post``."""
    diag = Diagnostics(xr.Dataset(), 0, 0.0, Gate(), True, [])
    return Twin(
        spec,
        patient,
        xr.DataTree.from_dict({"posterior": post}),
        diag,
        {},
        design=design_for(spec, patient),
    )


TARGET = Target(ValueAt(24.0, name="C(24h)"), lower=1.0, name="C(24h) >= 1")


def test_identical_twins_do_not_disagree():
    a, b = synthetic_twin("a", 5.0, seed=1), synthetic_twin("b", 5.0, seed=2)
    res = disagreement(
        [a, b],
        {"a": 0.5, "b": 0.5},
        SCENARIOS,
        GRID,
        qois=[Cmax((0, 24), name="Cmax")],
        targets=[TARGET],
    ).data
    assert float(res.qoi_between_share.max()) < 0.01
    assert float(res.traj_between_share.sel(time=slice(0.5, 24)).max()) < 0.01
    assert (
        float(res.p_recommend_differently.max()) == 0.0
        and float(res.weight_against_ensemble.max()) == 0.0
    )
    same = disagreement(
        [a, dataclasses.replace(a, spec=dataclasses.replace(a.spec, name="a2"))],
        {"a": 0.5, "a2": 0.5},
        SCENARIOS,
        GRID,
        targets=[TARGET],
    ).data
    assert float(same.traj_between_share.max()) == 0.0 and float(same.traj_w1.max()) == 0.0


def test_non_overlapping_twins_give_share_near_one():
    a, b = (
        synthetic_twin("slow", 1.0, cl_sd=0.02, seed=1),
        synthetic_twin("fast", 10.0, cl_sd=0.02, seed=2),
    )
    res = disagreement(
        [a, b],
        {"slow": 0.5, "fast": 0.5},
        SCENARIOS,
        GRID,
        qois=[AUC((0, 24), name="AUC")],
        targets=[TARGET],
    ).data
    assert float(res.qoi_between_share.min()) > 0.99
    assert float(res.traj_between_share.sel(time=slice(2, 24)).min()) > 0.99
    # the twins recommend different things: C(24h) >= 1 holds for the slow-clearance twin only
    p = res.p_meets.sel(target=TARGET.name, scenario="200 mg once")
    assert float(p.sel(source="slow")) == 1.0 and float(p.sel(source="fast")) == 0.0
    assert float(p.sel(source="ensemble")) == pytest.approx(0.5)


def test_law_of_total_variance_matches_pooled_samples():
    a, b = synthetic_twin("a", 3.0, cl_sd=0.3, seed=3), synthetic_twin("b", 6.0, cl_sd=0.2, seed=4)
    res = disagreement(
        [a, b], {"a": 0.5, "b": 0.5}, SCENARIOS[:1], GRID, qois=[ValueAt(6.0, name="C6")]
    ).data
    c6 = [
        100.0 / 10.0 * np.exp(-t.idata["posterior"]["CL"].values.ravel() / 10.0 * 6.0)
        for t in (a, b)
    ]
    pooled = np.var(np.concatenate(c6))  # equal weights and sizes: the mixture's variance
    within, between = (
        float(res[v].sel(time=6.0).squeeze()) for v in ("traj_within_var", "traj_between_var")
    )
    assert within + between == pytest.approx(pooled, rel=1e-10)
    assert float(res.qoi_between_share.squeeze()) == pytest.approx(between / pooled, rel=1e-10)
    q = weighted_quantile(c6, [0.5, 0.5], [0.05, 0.95])
    pooled_q = np.quantile(np.concatenate(c6), [0.05, 0.95], method="inverted_cdf")
    np.testing.assert_array_equal(q, pooled_q)  # equal weights and sizes: the pooled quantile


@pytest.mark.parametrize("phi", [0.0, 0.9])
def test_monte_carlo_errors_match_repeated_runs(phi):
    """Reported MCSEs vs the spread of estimates over 40 independent posteriors (seeds)."""
    target = Target(ValueAt(12.0, name="C12"), lower=0.1, name="C12 >= 0.1")  # P about 0.5
    est, se = [], []
    for seed in range(40):
        a = synthetic_twin("a", 4.0, cl_sd=0.25, seed=2 * seed, phi=phi)
        b = synthetic_twin("b", 5.0, cl_sd=0.25, seed=2 * seed + 1, phi=phi)
        r = disagreement(
            [a, b],
            {"a": 0.6, "b": 0.4},
            SCENARIOS[1:],
            GRID,
            qois=[ValueAt(12.0, name="C12")],
            targets=[target],
        ).data
        est.append(
            [
                float(r.p_meets.sel(source="ensemble").squeeze()),
                float(r.qoi_between_share.squeeze()),
                float(r.qoi_w1.squeeze()),
            ]
        )
        se.append(
            [
                float(r.p_meets_mcse.sel(source="ensemble").squeeze()),
                float(r.qoi_between_share_mcse.squeeze()),
                float(r.qoi_w1_mcse.squeeze()),
            ]
        )
    ratio = np.std(est, axis=0, ddof=1) / np.mean(se, axis=0)
    # 40 replicates: the SD estimate itself is uncertain by about 11 %
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_repeated_oral_dosing_and_infusion_are_exact():
    oral = load_spec("pk_2cmt_oral")
    regimen = Scenario.regimen("q8h", 250, "oral", interval=8, n_doses=6).switch(
        24, Scenario.regimen("q12h", 400, "oral", interval=12, n_doses=4, start=24)
    )
    iv = load_spec("pk_2cmt_iv")
    infusion = Scenario.regimen(
        "1 h infusions", 100, "iv", interval=12, n_doses=4, duration=1.0
    ) + Scenario("loading bolus", (Dose(0.0, 50.0, "iv"),))
    times = np.linspace(0, 72, 145)
    for spec, sc in [(oral, regimen), (iv, infusion)]:
        env = spec.evaluate_derived(spec.typical_values())
        doses = sc.to_doses(spec)
        got, ref = state_amounts(spec, env, times, doses), solve_reference(spec, env, times, doses)
        for s in spec.states:
            np.testing.assert_allclose(got[s], ref[s], rtol=1e-6, atol=1e-6 * np.abs(ref[s]).max())
    assert [d.time for d in regimen.doses] == [0, 8, 16, 24, 36, 48, 60]


def test_qois_against_closed_forms():
    ka, ke, dose, v = 1.5, 0.1, 100.0, 10.0
    t = np.linspace(0, 48, 48001)
    y = (dose * ka / (v * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t)))[None, :]
    tmax = np.log(ka / ke) / (ka - ke)
    assert Tmax((0, 48))(t, y)[0] == pytest.approx(tmax, abs=1e-3)
    cmax = dose * ka / (v * (ka - ke)) * (np.exp(-ke * tmax) - np.exp(-ka * tmax))
    assert Cmax((0, 48))(t, y)[0] == pytest.approx(cmax, rel=1e-7)
    auc = (
        dose
        / v
        * (1 / ke * (1 - np.exp(-ke * 48)) - 1 / ka * (1 - np.exp(-ka * 48)))
        * ka
        / (ka - ke)
    )
    assert AUC((0, 48))(t, y)[0] == pytest.approx(auc, rel=1e-6)
    # time above 5 mg/L: between the two roots of C(t) = 5
    above = t[y[0] >= 5.0]
    assert TimeInRange(5.0, 100.0, (0, 48))(t, y)[0] == pytest.approx(
        above[-1] - above[0], abs=2e-3
    )
    ratio = Custom("auc_per_cmax", "auc / cmax", {"auc": AUC((0, 48)), "cmax": Cmax((0, 48))})
    assert ratio(t, y)[0] == pytest.approx(auc / cmax, rel=1e-6)
    assert StaysInRange(0.0, 100.0, (1, 48))(t, y)[0] == 1.0
    with pytest.raises(ExpressionError, match="__import__"):
        Custom("bad", "__import__('os')", {"auc": AUC((0, 48))})


def test_bad_scenarios_are_rejected():
    with pytest.raises(ValueError, match="interval"):
        Scenario.regimen("x", 100, "oral", n_doses=3)
    with pytest.raises(ValueError, match="exceeds the dosing interval"):
        Scenario.regimen("x", 100, "iv", interval=6, n_doses=3, duration=8)
    with pytest.raises(ValueError, match="amount must be > 0"):
        Dose(0.0, -5.0, "iv")
    with pytest.raises(ValueError, match="route 'sc'"):
        Scenario.regimen("x", 100, "sc").to_doses(SPEC)
    a = synthetic_twin("a", 5.0)
    with pytest.raises(ValueError, match="sum to 1"):
        disagreement([a], {"a": 0.5}, SCENARIOS, GRID)
    assert isinstance(SpecError("f", "m"), ValueError)


@pytest.mark.parametrize(("n_a", "n_b"), [(500, 500), (400, 300), (7, 1000)])
def test_wasserstein_distance_matches_scipy(n_a, n_b):
    from scipy.stats import wasserstein_distance

    from twinbayes.decisions.twin_disagreement import _w1

    rng = np.random.default_rng(n_a + n_b)
    a = rng.lognormal(0.0, 0.5, (n_a, 3))
    b = rng.gamma(2.0, 0.7, (n_b, 3))
    expected = [wasserstein_distance(a[:, j], b[:, j]) for j in range(3)]
    np.testing.assert_allclose(_w1(a, b), expected, rtol=1e-12)


def test_mixture_quantile_matches_its_definition():
    """The smallest draw v with sum_k w_k * #{draws_k <= v} / n_k >= q, by brute force (unequal
    sizes, a zero weight, ties within and between samples, unsorted and presorted draws,
    several columns)."""
    rng = np.random.default_rng(7)
    for it in range(60):
        sizes = rng.integers(1, 40, size=3)
        draws = [rng.normal(size=(n, 2, 3)) * rng.uniform(0.5, 3) for n in sizes]
        if it % 2:  # few distinct values: ties everywhere
            draws = [np.round(d) for d in draws]
        w = rng.dirichlet(np.ones(3)) * np.array([1.0, 1.0, rng.integers(0, 2)])
        w /= w.sum()
        q = rng.uniform(0.01, 0.99, size=4)
        got = weighted_quantile(draws, w, q)
        assert np.array_equal(got, weighted_quantile([np.sort(d, axis=0) for d in draws], w, q))
        for i, j in np.ndindex(2, 3):
            cols = [d[:, i, j] for d in draws]
            pool = np.sort(np.concatenate(cols))
            cdf = sum(wk * (c[None, :] <= pool[:, None]).mean(axis=1) for wk, c in zip(w, cols))
            for level, value in zip(q, got[:, i, j]):
                assert value == pool[np.argmax(cdf >= level - 1e-12)]


def glucose_twin(name: str, spec_name: str, draws: int = 3) -> Twin:
    """A forced twin (insulin drives glucose) with a small synthetic posterior near the priors' medians."""
    spec = dataclasses.replace(load_spec(spec_name), name=name)
    patient = Patient.from_csv("bundled:ivgtt_pacini_bergman_1986.csv")
    rng = np.random.default_rng(3)
    typical = spec.typical_values()
    post = xr.Dataset(
        {
            p: (("chain", "draw"), v * np.exp(0.1 * rng.normal(size=(2, draws))))
            for p, v in typical.items()
            if p in spec.parameters
        }
    )
    return twin_with_posterior(spec, patient, post)


def test_a_changed_forcing_series_is_simulated_like_scipy_under_it():
    """Halved insulin, and a given insulin clamp, against Radau on the same changed forcing."""
    from twinbayes.fitting.predictive import predictive_draws
    from twinbayes.spec.scenarios import SeriesChange

    twin = glucose_twin("minimal", "glucose_minimal")
    grid = np.linspace(8, 180, 44)
    halved = Scenario("insulin halved", series=(SeriesChange("insulin", scale=0.5),))
    clamp = Scenario(
        "clamp",
        time_unit="h",
        series=(SeriesChange("insulin", times=(0, 1, 3), values=(60, 60, 30), unit="uU/mL"),),
    )
    kt, kv = twin.design.inputs["I"]
    for sc, forcing in [
        (halved, (kt, 0.5 * kv)),
        (clamp, (np.array([0.0, 60.0, 180.0]), np.array([60.0, 60.0, 30.0]))),
    ]:
        got = predictive_draws(twin, grid, scenario=sc, mean=True).values
        post = twin.idata["posterior"]
        for k in range(2):  # two posterior draws, each against its own reference solve
            env = {p: float(post[p].values.ravel()[k]) for p in post.data_vars}
            env["Ib"] = float(np.interp(0.0, kt, kv))  # the patient's basal insulin, unchanged
            x0 = {"G": env["G0"], "X": 0.0}
            ref = solve_reference(twin.spec, env, grid, {}, x0=x0, forcing={"I": forcing})["G"]
            np.testing.assert_allclose(got[k], ref, rtol=1e-5)
    unchanged = predictive_draws(twin, grid, mean=True).values
    assert np.all(
        np.abs(predictive_draws(twin, grid, scenario=halved, mean=True).values - unchanged) > 0
    )


def test_a_forced_scenario_is_refused_where_it_cannot_be_answered():
    from twinbayes.fitting.predictive import predictive_draws
    from twinbayes.spec.scenarios import SeriesChange

    twin = glucose_twin("minimal", "glucose_minimal")
    halved = Scenario("insulin halved", series=(SeriesChange("insulin", scale=0.5),))
    with pytest.raises(ValueError, match="known from 0 to 182.*reach 300"):
        predictive_draws(twin, np.linspace(8, 300, 10), scenario=halved)
    with pytest.raises(ValueError, match="drives no input of spec pk_1cmt_iv"):
        halved.to_inputs(SPEC, None)
    with pytest.raises(ValueError, match="increase strictly"):
        SeriesChange("insulin", times=(0, 0), values=(1, 2), unit="uU/mL")
    with pytest.raises(ValueError, match="need a unit"):
        SeriesChange("insulin", times=(0, 1), values=(1, 2))
    with pytest.raises(ValueError, match="either scale or times"):
        SeriesChange("insulin", scale=2.0, times=(0, 1), values=(1, 2), unit="uU/mL")
    with pytest.raises(ValueError, match="changes a series twice"):
        Scenario("x", series=(SeriesChange("insulin"), SeriesChange("insulin", scale=2.0)))


def test_scenarios_simulated_ahead_give_the_same_bits_and_must_match():
    """A study simulates the scenarios while the comparison runs and passes them in."""
    from twinbayes.decisions.twin_disagreement import simulate, twin_simulation

    twins = [synthetic_twin("a", 1.0, seed=1), synthetic_twin("b", 2.0, seed=2)]
    qois = [ValueAt(12.0, name="C(12h)")]
    kwargs = dict(qois=qois, targets=[TARGET])
    sim = simulate(twins, SCENARIOS, GRID, **kwargs)
    ahead = disagreement(twins, {"a": 0.3, "b": 0.7}, SCENARIOS, GRID, **kwargs, simulated=sim)
    here = disagreement(twins, {"a": 0.3, "b": 0.7}, SCENARIOS, GRID, **kwargs)
    xr.testing.assert_identical(ahead.data, here.data)
    # each twin simulated on its own (as a study does while the next twins fit): the same bits
    per_twin = [twin_simulation(SCENARIOS, GRID, **kwargs)(t) for t in twins[::-1]][::-1]
    pieced = simulate(twins, SCENARIOS, GRID, **kwargs, per_twin=per_twin)
    for a, b in zip(pieced.means + pieced.values, sim.means + sim.values):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(pieced.grid, sim.grid) and pieced.qois == sim.qois
    for other in [
        dict(scenarios=SCENARIOS[:1]),
        dict(scenarios=[SCENARIOS[0], Scenario.regimen("200 mg once", 250, "iv")]),
        dict(times=GRID[:-1]),
        dict(qois=[]),
        dict(targets=[]),
        dict(twins=twins[::-1]),
        dict(observable="concentration"),
    ]:
        args = {"twins": twins, "scenarios": SCENARIOS, "times": GRID, **kwargs, **other}
        weights = {"a": 0.3, "b": 0.7}
        with pytest.raises(ValueError, match="simulate with the same"):
            disagreement(weights=weights, simulated=sim, **args)
