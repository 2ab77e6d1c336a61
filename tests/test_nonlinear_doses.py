"""Doses into nonlinear ODE twins (bolus state jumps, zero-order infusions as piecewise-constant
rates): the engine against SciPy's Radau with the doses as restarts, sensitivities against finite
differences, saturable exposure, and a fit.

Reference solutions: :func:`twinbayes.dynamics.reference.solve_reference` integrates the spec's
right-hand sides with ``scipy.integrate.solve_ivp`` (Radau, rtol 1e-11) between dose events,
independently of the engine's Runge-Kutta code and its generated sensitivities.
"""

import dataclasses

import numpy as np
import pytest

from twinbayes import fit, load_spec, simulate_patient
from twinbayes.dynamics.ode import (
    Forcing,
    ode_system,
    ode_trajectories,
    solve,
)
from twinbayes.dynamics.reference import solve_reference
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.run.pipeline import check_scenarios
from twinbayes.run.study import load_study

ORAL_MM = load_spec("pk_1cmt_oral_mm")
IV_MM = load_spec("pk_1cmt_iv_mm")
IV_2CMT_MM = load_spec("pk_2cmt_iv_mm")
IDR = load_spec("indirect_response_inhibition")
PARALLEL = load_spec("pk_1cmt_oral_linear_mm")  # parallel first-order + Michaelis-Menten
TMDD = load_spec("tmdd_qss_iv")  # target-mediated disposition, quasi-steady state (days, nmol)
ENV = {"ka": 1.2, "Vmax": 30.0, "Km": 4.0, "V": 25.0, "sigma_prop": 0.1}
DOSED = [
    ORAL_MM,
    IV_MM,
    # the two-compartment and indirect-response specs under -m slow (the default run's budget)
    pytest.param(IV_2CMT_MM, marks=pytest.mark.slow, id="pk_2cmt_iv_mm"),
    pytest.param(IDR, marks=pytest.mark.slow, id="indirect_response_inhibition"),
    pytest.param(PARALLEL, marks=pytest.mark.slow, id="pk_1cmt_oral_linear_mm"),
    pytest.param(TMDD, marks=pytest.mark.slow, id="tmdd_qss_iv"),
]
# relative error allowed against Radau: saturable PK 1e-6 of each state's range; the indirect
# response (a production inhibited by the drug, nonlinear in the concentration) 1e-5
TOLERANCE = {IDR.name: 1e-5}


def parameters(spec) -> dict[str, float]:
    """ENV where it names the spec's parameters, the prior medians elsewhere; with derived values."""
    return spec.evaluate_derived(
        {**spec.typical_values(), **{k: v for k, v in ENV.items() if k in spec.parameters}}
    )


# loading and maintenance doses; observations before, at (pre-dose) and between doses
DOSES = (np.array([0.0, 12.0, 24.0, 36.0]), np.array([600.0, 300.0, 300.0, 300.0]))
TIMES = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 11.9, 12.0, 12.1, 18.0, 24.0, 30.0, 36.0, 40.0, 60.0])
# the same doses as infusions of 1 h, 2 h, 0.5 h and a bolus; outputs during and after each
INFUSIONS = (*DOSES, np.array([1.0, 2.0, 0.5, 0.0]))


@pytest.mark.parametrize("spec", DOSED, ids=lambda s: getattr(s, "name", s))
def test_multiple_boluses_match_radau(spec):
    route = next(iter(spec.routes))
    env = parameters(spec)
    x0 = {s: float(spec.initial[s](env)) for s in spec.states}
    ref = solve_reference(spec, env, TIMES, {route: DOSES}, x0=x0)
    got = ode_trajectories(spec, env, TIMES, list(spec.states), doses={route: DOSES})
    for s in spec.states:
        scale = np.abs(ref[s]).max()
        assert np.abs(got[s] - ref[s]).max() / scale < TOLERANCE.get(spec.name, 1e-6), s
    # an observation at a dose time is the amount just before the dose
    i = list(TIMES).index(12.0)
    assert got[spec.routes[route].state][i] < got[spec.routes[route].state][i + 1]


@pytest.mark.parametrize("spec", DOSED, ids=lambda s: getattr(s, "name", s))
def test_infusions_match_radau(spec):
    """Infusions add a constant rate to the route's state between start and end (Radau: an
    input switched on and off between restarts)."""
    route = next(iter(spec.routes))
    env = parameters(spec)
    x0 = {s: float(spec.initial[s](env)) for s in spec.states}
    times = np.union1d(TIMES, [0.25, 0.99, 1.0, 13.0, 14.0, 24.3])
    ref = solve_reference(spec, env, times, {route: INFUSIONS}, x0=x0)
    got = ode_trajectories(spec, env, times, list(spec.states), doses={route: INFUSIONS})
    for s in spec.states:
        scale = np.abs(ref[s]).max()
        assert np.abs(got[s] - ref[s]).max() / scale < TOLERANCE.get(spec.name, 1e-6), s
    # an infusion raises its state while it runs, from zero at its start
    c = got[spec.routes[route].state]
    assert c[list(times).index(0.25)] < c[list(times).index(0.99)]


@pytest.mark.parametrize(
    "spec, doses",
    [
        (ORAL_MM, DOSES),
        (ORAL_MM, INFUSIONS),
        (IV_2CMT_MM, INFUSIONS),
        (IDR, INFUSIONS),
        (PARALLEL, INFUSIONS),
        pytest.param(TMDD, INFUSIONS, marks=pytest.mark.slow),  # ~60 s: the slow run
    ],
    ids=[
        "oral_mm-boluses",
        "oral_mm-infusions",
        "2cmt_iv_mm-infusions",
        "idr-infusions",
        "parallel_linear_mm-infusions",
        "tmdd_qss-infusions",
    ],
)  # INFUSIONS ends with a bolus: both kinds for every spec
def test_sensitivities_across_doses_match_finite_differences(spec, doses):
    """The engine's forward sensitivities against central differences of the Radau reference
    (rtol 1e-11: smooth in the parameters, unlike differences of an adaptive explicit solve)."""
    system = ode_system(spec)
    env = parameters(spec)
    p = np.array([env[q] for q in system.params])
    x0 = {s: float(spec.initial[s](env)) for s in spec.states}
    y0 = np.array([x0[s] for s in system.states])
    dosing = {next(iter(spec.routes)): doses}
    forcing = Forcing.for_doses(spec, TIMES, dosing)
    _, S = solve(spec, p, y0, forcing, sens=True)
    n = len(system.states)

    def reference(values):
        e = spec.evaluate_derived(dict(zip(system.params, values)))
        ref = solve_reference(spec, e, TIMES, dosing, x0=x0)
        return np.column_stack([ref[s] for s in system.states])

    for j, name in enumerate(system.params):
        h = 1e-5 * abs(p[j])
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        fd = (reference(up) - reference(down)) / (2 * h)
        scale = np.abs(fd).max()
        assert np.abs(S[:, :, n + j] - fd).max() < 1e-4 * scale, name


def test_saturable_elimination_makes_exposure_grow_faster_than_the_dose():
    env = ORAL_MM.evaluate_derived({k: v for k, v in ENV.items() if k != "sigma_prop"})
    grid = np.linspace(0.0, 48.0, 481)

    def auc(amount):
        dose = {"oral": (np.array([0.0]), np.array([amount]))}
        c = ode_trajectories(ORAL_MM, env, grid, ["central"], doses=dose)["central"] / env["V"]
        return np.trapezoid(c, grid)

    assert auc(200.0) > 2.2 * auc(100.0) and auc(800.0) > 2.5 * auc(400.0)


def test_target_mediated_clearance_falls_as_the_dose_grows():
    """QSS TMDD (Gibiansky et al. 2008): dose-normalised exposure grows with the dose and, far
    above the target, approaches the linear limit AUC / dose = 1 / CL (volume-free)."""
    env = TMDD.evaluate_derived(TMDD.typical_values())
    grid = np.linspace(0.0, 400.0, 8001)  # days: until the drug has washed out

    def auc_per_dose(nmol):
        a = ode_trajectories(TMDD, env, grid, ["A", "Rtot"], doses={"iv": ([0.0], [nmol])})
        x = a["A"] / env["V"] - a["Rtot"] - env["KSS"]
        free = (
            2
            * env["KSS"]
            * a["A"]
            / env["V"]
            / (np.sqrt(x * x + 4 * env["KSS"] * a["A"] / env["V"]) - x)
        )
        return np.trapezoid(free, grid) / nmol  # (nmol/L d) / nmol = d/L

    # the share of the dose cleared linearly, CL x AUC / dose: 3 %, 24 %, 94 % (measured)
    low, mid, high = (env["CL"] * auc_per_dose(d) for d in (10.0, 300.0, 30000.0))
    assert low < 0.05 < 0.2 < mid < 0.3 and 0.9 < high < 1.0


def test_doses_in_mg_reach_a_molar_spec_through_the_routes_molar_mass():
    from twinbayes.spec.scenarios import Scenario

    ((t, amount, _),) = Scenario.regimen("150 mg", 150, "iv", unit="mg").to_doses(TMDD).values()
    assert amount.tolist() == [1000.0]  # 150 mg / 150 000 g/mol = 1 umol


LAGGED = load_spec(  # the saturable oral twin with an absorption lag and a bioavailability
    "pk_1cmt_oral_mm_lag.toml",
    text=ORAL_MM.text.replace(
        'state = "depot"', 'state = "depot"\nlag = "tlag"\nbioavailability = "F"'
    ).replace(
        "[parameters.V]",
        '[parameters.tlag]\nunit = "h"\ndescription = "absorption lag"\n'
        'prior = { distribution = "lognormal", mu = -0.7, sigma = 0.3 }\n\n'
        '[parameters.F]\nunit = "1"\ndescription = "bioavailability"\n'
        'prior = { distribution = "beta", alpha = 8, beta = 2 }\n\n[parameters.V]',
    ),
)
# the same with F known (fixed at 0.8, as from a label): oral data identify only F/V and Vmax/F
LAGGED_F_KNOWN = load_spec(
    "pk_1cmt_oral_mm_lag_f.toml",
    text=LAGGED.text.replace(
        '[parameters.F]\nunit = "1"\ndescription = "bioavailability"\n'
        'prior = { distribution = "beta", alpha = 8, beta = 2 }',
        '[fixed.F]\nunit = "1"\ndescription = "bioavailability"\nvalue = 0.8',
    ),
)
# the second dose's lagged time (12.5) falls between outputs; 12.0 is before it
LAG_TIMES = np.array(
    [0.0, 0.3, 0.6, 1.0, 3.0, 11.9, 12.0, 12.1, 12.6, 18.0, 24.0, 36.0, 40.0, 60.0]
)


@pytest.mark.parametrize(
    "method", ["explicit", pytest.param("implicit", marks=pytest.mark.slow)]
)  # the implicit method's compilation (~30 s) under -m slow: the default run's budget
@pytest.mark.parametrize("kind", ["boluses", "infusions"])
def test_lag_and_bioavailability_on_an_ode_route_match_radau_with_their_sensitivities(method, kind):
    """Boluses at ``t + tlag`` scaled by ``F``, and infusions of 1 h, 2 h and 0.5 h with a bolus
    (rate ``F amount / duration`` from ``t + tlag`` to ``t + tlag + duration``); the
    sensitivities to ``tlag`` (the jump times move: ``S += (f(y-) - f(y+)) dtlag/dp``, and
    ``(f(u-) - f(u+)) dtlag/dp`` where an infusion starts or ends) and to ``F`` against central
    differences of Radau."""
    spec = dataclasses.replace(LAGGED, method=method)
    system = ode_system(spec)
    env = spec.evaluate_derived({**parameters(spec), "tlag": 0.5, "F": 0.8})
    x0 = {s: float(spec.initial[s](env)) for s in spec.states}
    dosing = {"oral": DOSES if kind == "boluses" else INFUSIONS}
    ref = solve_reference(spec, env, LAG_TIMES, dosing, x0=x0)
    got = ode_trajectories(spec, env, LAG_TIMES, list(spec.states), doses=dosing)
    tolerance = 1e-6 if method == "explicit" else 1e-5  # ESDIRK is of order 3
    for s in spec.states:
        assert np.abs(got[s] - ref[s]).max() / np.abs(ref[s]).max() < tolerance, s
    assert got["depot"][list(LAG_TIMES).index(0.3)] == 0.0  # nothing absorbed before the lag
    p = np.array([env[q] for q in system.params])
    y0 = np.array([x0[s] for s in system.states])
    _, S = solve(spec, p, y0, Forcing.for_doses(spec, LAG_TIMES, dosing), sens=True)
    n = len(system.states)

    def reference(values):
        e = spec.evaluate_derived(dict(zip(system.params, values)))
        r = solve_reference(spec, e, LAG_TIMES, dosing, x0=x0)
        return np.column_stack([r[s] for s in system.states])

    for name in ("tlag", "F", "ka", "Vmax"):
        j = system.params.index(name)
        h = 1e-5 * abs(p[j])
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        fd = (reference(up) - reference(down)) / (2 * h)
        assert np.abs(S[:, :, n + j] - fd).max() < 100 * tolerance * np.abs(fd).max(), name


@pytest.mark.slow
def test_nuts_samples_a_lagged_saturable_twin_and_covers_its_lag():
    """NUTS through the lag's sensitivity jump: no divergences, and the posterior of the absorption
    lag and rate covers the truth of a simulated patient (F known: with it free, oral data identify
    only F/V and Vmax/F, a ridge that is the data's limit, not the engine's).  With levels from
    1.5 h after each dose the lag trades off against ka: its posterior is not narrower than
    its prior here; the gradient itself is checked against finite differences above."""
    truth = {**ENV, "tlag": 0.75, "F": 0.8}
    # the first level after the lag: with a proportional error a level predicted 0 has no density
    times = np.array([1.5, 2.0, 2.5, 4.0, 8.0, 11.5, 13.5, 14.0, 18.0, 23.5, 25.5, 26.0, 36.0])
    doses = {"oral": (np.array([0.0, 12.0, 24.0]), np.array([600.0, 400.0, 400.0]))}
    patient = simulate_patient(LAGGED_F_KNOWN, truth, times, doses, seed=4)
    twin = fit(LAGGED_F_KNOWN, patient, seed=2, draws=500, tune=500, chains=2, ladder=NO_LADDER)
    post = twin.idata["posterior"]
    assert int(twin.diagnostics.divergent) == 0  # Vmax-Km mix slowly, as in the test above
    for name in ("tlag", "ka"):
        lo, hi = np.quantile(post[name].values, [0.01, 0.99])
        assert lo < truth[name] < hi, (name, lo, hi)


@pytest.mark.slow
def test_a_saturable_twin_fits_repeated_doses():
    """Simulated patient with known truth, three doses, eight levels: the posterior covers it."""
    truth = dict(ENV)
    times = np.array([1.0, 3.0, 8.0, 11.5, 14.0, 23.5, 26.0, 36.0])
    doses = {"oral": (np.array([0.0, 12.0, 24.0]), np.array([600.0, 400.0, 400.0]))}
    patient = simulate_patient(ORAL_MM, truth, times, doses, seed=11)
    twin = fit(ORAL_MM, patient, seed=2, draws=500, tune=500, chains=2, ladder=NO_LADDER)
    post = twin.idata["posterior"]
    assert int(twin.diagnostics.divergent) == 0
    for name in ("Vmax", "V"):
        lo, hi = np.quantile(post[name].values, [0.01, 0.99])
        assert lo < truth[name] < hi, (name, lo, hi)


def test_pre_dose_levels_are_left_out_of_a_dosed_twin_starting_from_zero():
    """Theophylline subject 1 has a level at t = 0, before the dose: a twin whose states start at 0
    predicts exactly 0 there (proportional error: an infinite density), so, as for linear twins,
    the level is left out and reported."""
    from twinbayes import Patient
    from twinbayes.dynamics.design import design_for

    patient = Patient.from_csv("bundled:theophylline.csv", subject="1")
    design = design_for(ORAL_MM, patient)
    assert design.excluded == (("concentration", 0.0, 0.74),)
    assert design.times["concentration"].min() > 0


def test_a_study_takes_an_infusion_scenario_on_a_lagged_ode_twin(tmp_path):
    """Once refused (the start and end of the infusion move with the lag): now simulated, so a
    study checks it like any scenario, and the twin's infusion starts after its lag."""
    study_file = tmp_path / "study.toml"
    study_file.write_text(
        '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline.csv"\nsubject = "1"\n'
        '[twins]\nspecs = ["pk_1cmt_oral_mm"]\n[[scenarios]]\nname = "2 h infusions"\n'
        'route = "oral"\namount = 300\ninterval = 12\ndoses = 2\nduration = 2\n'
        "[predictions]\ntimes = { start = 0, stop = 24, step = 1 }\n"
    )
    study = load_study(study_file)
    check_scenarios(study, [ORAL_MM, LAGGED])
    env = LAGGED.evaluate_derived({**parameters(LAGGED), "tlag": 0.5, "F": 0.8})
    doses = study.scenarios[0].to_doses(LAGGED)
    got = ode_trajectories(
        LAGGED, env, np.array([0.25, 0.5, 1.0, 2.5, 3.0]), ["depot"], doses=doses
    )
    assert got["depot"][0] == got["depot"][1] == 0.0  # nothing before t + tlag = 0.5
    assert 0 < got["depot"][2] < got["depot"][3]  # filling during the infusion (0.5-2.5) ...
    assert got["depot"][4] < got["depot"][3]  # ... and emptying after it
