"""Forward widening (issue 43): the discrepancy rate against independent references, the Brownian
widening's moments, and a decelerating tumour whose exponential twin over-forecasts."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from twinbayes import fit, load_spec
from twinbayes.decisions.forward import (
    Discrepancy,
    discrepancy_of,
    fit_rate,
    forward_discrepancy,
    likelihood_ratio,
    widening_threshold,
)
from twinbayes.decisions.twin_disagreement import Forward, disagreement
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.fitting.predictive import predictive_draws
from twinbayes.model.simulate import simulate_patient
from twinbayes.spec.qoi import Target, ValueAt
from twinbayes.spec.scenarios import Scenario


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
    args = _origins(rng, 150, tau2=0.003)
    rate = fit_rate(*args)
    grid = np.linspace(0.0, 0.008, 81)
    brute = grid[np.argmin([_minus_loglik(t, *args) for t in grid])]
    assert rate == pytest.approx(brute, abs=1e-4)  # the grid's step
    finer = np.linspace(rate - 1e-4, rate + 1e-4, 21)
    assert _minus_loglik(rate, *args) <= min(_minus_loglik(t, *args) for t in finer) + 1e-9
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


def test_the_likelihood_ratio_and_its_critical_value_against_scipy():
    rng = np.random.default_rng(11)
    args = _origins(rng, 6, tau2=0.002)
    rate = fit_rate(*args)
    brute = 2 * (_minus_loglik(0.0, *args) - _minus_loglik(rate, *args))
    assert likelihood_ratio(*args, rate) == pytest.approx(brute, rel=1e-8)
    assert likelihood_ratio(*args, 0.0) == 0.0
    # the 50:50 mixture of chi2_0 and chi2_1 at 5 %: chi2_1's upper 10 % point, 2.706
    assert widening_threshold(0.05) == pytest.approx(2.7055, abs=1e-4)
    assert widening_threshold(0.5) == 0.0
    with pytest.raises(ValueError, match="level"):
        widening_threshold(0.0)


def test_a_twin_that_forecast_as_it_said_is_widened_at_about_the_tests_level():
    """The rate of widening when the errors are exactly as the forecasts said (independent
    origins, 3 of them, 4 forecasts each: a patient's worth): at most the nominal 5 % within its
    binomial error; with a real discrepancy of the size a drifting clearance gives, most are."""
    rng = np.random.default_rng(2026)
    n = 1500
    null = [likelihood_ratio(*a, fit_rate(*a)) for a in (_origins(rng, 3, 0.0) for _ in range(n))]
    size = np.mean(np.array(null) > widening_threshold(0.05))
    assert size < 0.05 + 3 * np.sqrt(0.05 * 0.95 / n), size
    drift = [_origins(rng, 3, 0.004) for _ in range(200)]
    power = np.mean([likelihood_ratio(*a, fit_rate(*a)) > widening_threshold() for a in drift])
    assert power > 0.5, power


def test_a_rate_that_does_not_pass_the_test_is_recorded_but_not_applied():
    import xarray as xr

    h = np.array([6.0, 12.0, 24.0, 36.0])
    errors = -np.array([0.05, 0.09, 0.15, 0.19])
    forecasts = xr.Dataset(
        {
            "forecast_ahead": ("f", h),
            "forecast_error": ("f", errors),
            "forecast_origin_index": ("f", np.zeros(4, int)),
            "forecast_cov": (("f", "g"), np.diag(np.full(4, 0.04))),
        }
    )
    strict, loose = (discrepancy_of("t", forecasts, 40.0, level) for level in (0.05, 0.5))
    assert strict.fitted == loose.fitted == loose.rate > 0.0
    assert strict.lr == loose.lr < widening_threshold(0.05)
    assert strict.rate == 0.0
    assert strict.as_attrs()["fitted"] == strict.fitted and strict.as_attrs()["rate"] == 0.0


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
GOMPERTZ = {"V0": 50.0, "a": 0.6, "b": 0.1, "sigma": 0.1}
"""A tumour that decelerates (Gompertz, Benzekry et al. 2014): 50 mm3 towards 20 000 mm3."""


def _gompertz_volume(t: np.ndarray) -> np.ndarray:
    p = GOMPERTZ
    return p["V0"] * np.exp(p["a"] / p["b"] * (1.0 - np.exp(-p["b"] * t)))


@pytest.fixture(scope="module")
def decelerating_tumour():
    """Twelve volumes (days 2-24, 10 % noise) of a decelerating tumour."""
    return simulate_patient(
        load_spec("tumor_gompertz"), GOMPERTZ, np.arange(2.0, 26.0, 2.0), {}, seed=1
    )


def test_an_exponential_twin_of_a_decelerating_tumour_is_widened_towards_the_truth(
    decelerating_tumour,
):
    """An exponential twin over-forecasts a decelerating tumour with narrow bands.  Its own
    forecasts of the later volumes say so (rate > 0; 0.08-0.11 / day over seeds 1-4); widened,
    its band past the last volume reaches down towards the truth, which the plain band misses by
    far.  The right twin (Gompertz) forecast as well as it expected and is left alone."""
    twin = fit(load_spec("tumor_exponential"), decelerating_tumour, seed=1, **SETTINGS)
    found = forward_discrepancy(twin, seed=1)
    assert found.rate > 0.05  # log-variance per day
    later = np.array([26.0, 28.0, 30.0, 32.0])
    truth = _gompertz_volume(later)
    plain = predictive_draws(twin, later, mean=True).values
    widened = found.widen(later, plain, np.random.default_rng(0))
    miss_plain = np.log(np.quantile(plain, 0.05, axis=0) / truth)
    miss_widened = np.log(np.quantile(widened, 0.05, axis=0) / truth)
    assert np.all(miss_plain > 0.4)  # the truth lies far below the plain 90 % band
    assert np.all(miss_widened < 0.35 * miss_plain)
    gompertz = fit(load_spec("tumor_gompertz"), decelerating_tumour, seed=1, **SETTINGS)
    assert forward_discrepancy(gompertz, seed=1).rate == 0.0


def test_disagreement_keeps_the_plain_posterior_and_records_the_widening(decelerating_tumour):
    patient = decelerating_tumour
    twins = [
        fit(load_spec(n), patient, seed=1, **SETTINGS)
        for n in ("tumor_exponential", "tumor_gompertz")
    ]
    target = Target(ValueAt(30.0, name="V(day 30)"), upper=20000.0)
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
    # the exponential twin is sure the tumour passes 20 000 mm3 by day 30; widened, less so
    assert float(plain.p_meets.sel(**exp)) < float(wide.p_meets.sel(**exp))
    gom = dict(exp, source="tumor_gompertz")
    assert float(plain.p_meets.sel(**gom)) == float(wide.p_meets.sel(**gom))


def test_a_study_says_what_it_widened_everywhere(tmp_path, capsys, decelerating_tumour):
    """The widening reaches the console, summary.json, disagreement.nc and the report's answer
    box, with how far the decision lies past the forecasts the levels checked."""
    import html
    import json

    import xarray as xr

    from twinbayes.run.cli import main

    patient = decelerating_tumour
    times, values = patient.observations("volume", "mm3", "d")
    rows = ["subject,time,time_unit,event,name,value,unit"]
    rows += [f"m1,{t:g},d,observation,volume,{float(v)!r},mm3" for t, v in zip(times, values)]
    (tmp_path / "tumour.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "tumour"\nseed = 3\n[patient]\ndata = "tumour.csv"\n'
        '[twins]\nspecs = ["tumor_exponential", "tumor_gompertz"]\n'
        "[sampler]\ndraws = 2000\ntune = 1000\n"
        '[[scenarios]]\nname = "untreated"\ntime_unit = "d"\ndoses = 0\n'
        "[predictions]\ntimes = { start = 0, stop = 30, step = 1 }\n"
        '[[qois]]\nname = "volume at day 30"\nkind = "value_at"\nat = 30\n'
        '[[targets]]\nqoi = "volume at day 30"\nupper = 20000\nname = "below 20000 mm3"\n'
    )
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "study.toml"), "--out", str(out), "--no-ladder"])
    console, errors = capsys.readouterr()
    assert code == 0, console + errors
    assert "forward widening: tumor_exponential's forecasts of this patient's later levels" in (
        console
    )
    outcome = json.loads((out / "summary.json").read_text())["outcome"]
    assert outcome["forward_widening"]["tumor_exponential"]["rate"] > 0
    assert outcome["forward_widening"]["tumor_gompertz"]["rate"] == 0.0
    with xr.open_dataset(out / "disagreement.nc", engine="h5netcdf") as d:
        assert json.loads(d.attrs["forward"])["twins"]["tumor_exponential"]["rate"] > 0
        assert json.loads(d.attrs["forward"])["level"] == 0.05
        assert "p_meets_plain" in d
    answer = (out / "report.html").read_text().split('id="answer"')[1].split("</section>")[0]
    answer = html.unescape(answer)
    assert "checked up to" in answer and "Widened past the last level" in answer
    assert "tumor_exponential (log SD +" in answer


@pytest.mark.parametrize(
    "extra, field",
    [
        ("widen_forward = 1\n", "predictions.widen_forward"),
        ("forward_min_points = 0\n", "predictions.forward_min_points"),
        ('forward_min_points = "3"\n', "predictions.forward_min_points"),
        ("forward_level = 0\n", "predictions.forward_level"),
        ("forward_level = 0.9\n", "predictions.forward_level"),
        ("forward_level = true\n", "predictions.forward_level"),
    ],
)
def test_bad_forward_settings_name_their_field(tmp_path, extra, field):
    from twinbayes.run.study import load_study
    from twinbayes.spec import SpecError

    (tmp_path / "s.toml").write_text(
        '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline.csv"\n'
        'subject = "1"\n[twins]\nspecs = ["pk_1cmt_oral"]\n'
        "[predictions]\ntimes = [1, 2]\n" + extra
    )
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        load_study(tmp_path / "s.toml")


def test_the_widening_level_is_read_from_the_study(tmp_path):
    from twinbayes.run.study import load_study

    (tmp_path / "s.toml").write_text(
        '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline.csv"\n'
        'subject = "1"\n[twins]\nspecs = ["pk_1cmt_oral"]\n'
        "[predictions]\ntimes = [1, 2]\nforward_level = 0.01\n"
    )
    assert load_study(tmp_path / "s.toml").forward_level == 0.01


def test_no_treatment_is_a_scenario_of_zero_doses_and_nothing_else(tmp_path):
    from twinbayes.run.study import load_study
    from twinbayes.spec import SpecError

    head = (
        '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline.csv"\n'
        'subject = "1"\n[twins]\nspecs = ["pk_1cmt_oral"]\n[predictions]\ntimes = [1, 2]\n'
    )
    (tmp_path / "a.toml").write_text(head + '[[scenarios]]\nname = "none"\ndoses = 0\n')
    (scenario,) = load_study(tmp_path / "a.toml").scenarios
    assert scenario.doses == () and scenario.series == ()
    (tmp_path / "b.toml").write_text(
        head + '[[scenarios]]\nname = "none"\ndoses = 0\nroute = "oral"\namount = 1\n'
    )
    with pytest.raises(SpecError, match=r"scenarios\[0\]\.doses"):
        load_study(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text(head + '[[scenarios]]\nname = "none"\n')
    with pytest.raises(SpecError, match="amount, route"):  # forgetting the dose is no treatment
        load_study(tmp_path / "c.toml")


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"twins": []}',
        '{"twins": {"elsewhere": {"rate": 1, "longest_checked": 1}}}',
        '{"twins": {"a": {"rate": "<b>", "longest_checked": -1}}}',
        '{"twins": {"a": {"rate": NaN, "longest_checked": Infinity}}}',
        '{"twins": {"a": {"rate": true, "longest_checked": 1e999}}}',
    ],
)
def test_a_forged_forward_record_is_read_as_no_widening(raw):
    """``disagreement.nc`` is untrusted: the report keeps only known twins and finite numbers."""
    import xarray as xr

    from twinbayes.output.report import forward_record

    d = xr.Dataset(coords={"source": ["a", "ensemble"]}, attrs={"forward": raw})
    record = forward_record(d)
    assert record in (None, {}) or record == {"a": (0.0, 0.0)}


def test_a_forecast_that_fails_leaves_the_twin_unwidened_and_the_run_going(monkeypatch):
    from types import SimpleNamespace

    import twinbayes.decisions.forward as forward
    from twinbayes.dynamics.design import Design

    def failing(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(forward, "lfo", failing)
    twin = SimpleNamespace(name="t", design=Design({"v": np.arange(1.0, 7.0)}, {}, {}))
    said = []  # the module's logger, whatever the CLI's logging setup left it
    monkeypatch.setattr(forward, "log", SimpleNamespace(warning=lambda m, *a: said.append(m % a)))
    found = forward.forward_discrepancy(twin)
    assert not found.estimable and found.since == 6.0
    assert said == ["t: forward widening not estimable (Eigenvalues did not converge)"]
    grid = np.linspace(0.0, 10.0, 11)
    ones = np.ones((2, 11))
    assert found.widen(grid, ones, np.random.default_rng(0)) is ones


def test_forecast_errors_of_noisy_draws_below_zero_stay_finite():
    """Moment matching where draws go below zero: a log covariance that is a covariance."""
    from twinbayes.comparison.lfo import log_forecast_error

    rng = np.random.default_rng(5)
    base = rng.lognormal(0.0, 0.3, size=(4000, 1))
    draws = np.hstack([base + rng.normal(0, 0.5, (4000, 1)), 3.0 - 2.5 * base])  # anti-correlated
    error, cov = log_forecast_error(draws, np.array([1.0, 0.5]))
    assert np.all(np.isfinite(error)) and np.all(np.isfinite(cov))
    assert abs(cov[0, 1]) <= np.sqrt(cov[0, 0] * cov[1, 1]) + 1e-12
    assert np.all(np.linalg.eigvalsh(cov) >= -1e-12)
