"""Stiff systems: the implicit ESDIRK integrator against SciPy's Radau, its sensitivities against
finite differences, the explicit method's report of stiffness, and a fit of a stiff twin.

The stiff system is the full target-mediated disposition model (``tmdd_full_iv``; Mager & Jusko
2001) with its binding rate constants scaled so that ``kon R0`` is 1e3 to 1e6 times the elimination
rate ``CL / V`` (``koff`` scaled alike, so the affinity ``KD = koff / kon`` stays).  References are
independent of the engine: ``scipy.integrate.solve_ivp`` (Radau, rtol 1e-11) restarted at each
dose (:func:`twinbayes.dynamics.reference.solve_reference`).
"""

import dataclasses
import re

import numpy as np
import pytest

from twinbayes import fit, load_spec, simulate_patient
from twinbayes.dynamics.ode import (
    Forcing,
    OdeError,
    ode_system,
    ode_trajectories,
    solve,
)
from twinbayes.dynamics.reference import solve_reference
from twinbayes.dynamics.tableau import ESDIRK3
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.spec.model_spec import SpecError

TMDD = load_spec("tmdd_full_iv")
EXPLICIT = dataclasses.replace(TMDD, method="explicit")
TIMES = np.array([0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 7.0, 7.5, 10.0, 14.0, 14.1, 21.0, 28.0, 56.0])
# a loading bolus, a 2 h infusion and a maintenance bolus (nmol; days)
DOSES = {"iv": (np.array([0.0, 7.0, 14.0]), np.array([20.0, 10.0, 10.0]), np.array([0, 1 / 12, 0]))}

BOLUSES = {"iv": DOSES["iv"][:2]}  # a simulated patient's record: boluses


def binding(ratio: float) -> dict[str, float]:
    """Typical values with ``kon R0 / (CL / V) = ratio`` (``koff`` scaled alike: the same KD)."""
    env = TMDD.evaluate_derived(TMDD.typical_values())
    scale = ratio * env["CL"] / env["V"] / (env["kon"] * env["R0"])
    return {**env, "kon": env["kon"] * scale, "koff": env["koff"] * scale}


def binding_known(ratio: float, known: tuple[str, ...] = ("kon", "koff")):
    """``tmdd_full_iv`` with ``known`` fixed at :func:`binding` (``ratio``), as binding constants
    measured in vitro (surface plasmon resonance) and target turnover from the literature: with
    free-drug levels only, fast binding identifies ``KD = koff / kon`` but not each constant, a
    ridge NUTS would crawl along."""
    env, text = binding(ratio), TMDD.text
    for name in known:
        text = re.sub(
            rf"\[parameters\.{name}\]\n(description = .*\n)(unit = .*\n)prior = .*\n",
            lambda m, name=name: f"[fixed.{name}]\nvalue = {env[name]!r}\n{m[1]}{m[2]}",
            text,
        )
    return load_spec("tmdd_full_iv_binding_known.toml", text=text)


def x0(env):
    return {s: float(TMDD.initial[s](env)) for s in TMDD.states}


def test_the_esdirk_coefficients_satisfy_the_order_conditions_and_l_stability():
    """Order 3 (embedded 2), stiffly accurate, and R(z) -> 0 as z -> -inf (L-stable):
    Hairer & Wanner (1996) sec. IV.3 and IV.6; catches a mistyped coefficient."""
    a, c, e = ESDIRK3.a, ESDIRK3.c, ESDIRK3.e
    b, b_hat = a[-1], a[-1] - e
    np.testing.assert_allclose(a.sum(axis=1), c, atol=1e-15)
    for w, order in ((b, 3), (b_hat, 2)):
        conditions = [w.sum() - 1, w @ c - 1 / 2, w @ c**2 - 1 / 3, w @ a @ c - 1 / 6][
            : order + order // 3
        ]
        np.testing.assert_allclose(conditions, 0, atol=1e-12)
    assert abs(b_hat @ c**2 - 1 / 3) > 1e-3  # the embedded solution is of order 2 only
    ones = np.ones(len(c))
    for z in (-1e6, -1e9):
        r = 1 + z * b @ np.linalg.solve(np.eye(len(c)) - z * a, ones)
        assert abs(r) < 1e-5
    assert np.allclose(np.diag(a)[1:], ESDIRK3.gamma) and a[0, 0] == 0


SLOW = pytest.mark.slow  # Radau references of a stiff system take seconds each: part under -m slow


@pytest.mark.parametrize(
    "ratio", [pytest.param(1e3, marks=SLOW), 1e4, pytest.param(1e5, marks=SLOW), 1e6]
)
def test_the_implicit_method_matches_radau_on_stiff_binding(ratio):
    env = binding(ratio)
    ref = solve_reference(TMDD, env, TIMES, DOSES, x0=x0(env))
    got = ode_trajectories(TMDD, env, TIMES, list(TMDD.states), doses=DOSES)
    for s in TMDD.states:
        assert np.abs(got[s] - ref[s]).max() / np.abs(ref[s]).max() < 1e-4, s


@pytest.mark.parametrize(
    "ratio, names",
    [
        (1e5, ("CL", "kon", "koff")),  # the default run: the stiff regime, the binding constants
        pytest.param(1e3, None, marks=SLOW),  # every parameter
        pytest.param(1e6, None, marks=SLOW),
    ],
)
def test_implicit_sensitivities_match_finite_differences_of_radau(ratio, names):
    system = ode_system(TMDD)
    env = binding(ratio)
    p = np.array([env[q] for q in system.params])
    start = x0(env)
    y0 = np.array([start[s] for s in system.states])
    forcing = Forcing.for_doses(TMDD, TIMES, DOSES)
    _, S = solve(TMDD, p, y0, forcing, sens=True)
    n = len(system.states)

    def reference(values):
        ref = solve_reference(TMDD, dict(zip(system.params, values)), TIMES, DOSES, x0=start)
        return np.column_stack([ref[s] for s in system.states])

    for j, name in enumerate(system.params):
        if names and name not in names:
            continue
        h = 1e-5 * abs(p[j])
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        fd = (reference(up) - reference(down)) / (2 * h)
        assert np.abs(S[:, :, n + j] - fd).max() < 1e-3 * np.abs(fd).max(), name


def test_the_explicit_method_reports_stiffness_and_names_the_fix():
    system = ode_system(TMDD)
    env = binding(1e6)
    p = np.array([env[q] for q in system.params])
    forcing = Forcing.for_doses(TMDD, TIMES, DOSES)
    with pytest.raises(
        OdeError, match=r'is stiff: at t = .* eigenvalue of magnitude .*method = "implicit"'
    ):
        solve(EXPLICIT, p, np.array([0.0, env["R0"], 0.0]), forcing)
    # the implicit method does not claim stiffness when it fails: it names the step budget only
    tiny = dataclasses.replace(TMDD, max_steps=5)
    with pytest.raises(OdeError, match="needed more than 5 steps") as info:
        solve(tiny, p, np.array([0.0, env["R0"], 0.0]), forcing)
    assert "stiff" not in str(info.value)


def test_an_unknown_method_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"dynamics.method: must be \"explicit\".*not 'bdf'"):
        load_spec("x.toml", text=TMDD.text.replace('method = "implicit"', 'method = "bdf"'))
    linear = load_spec("pk_1cmt_oral")
    with pytest.raises(SpecError, match="dynamics.method: applies to numerically integrated"):
        load_spec(
            "x.toml", text=linear.text.replace("[dynamics]", '[dynamics]\nmethod = "implicit"')
        )


KNOWN = ("kon", "koff", "kint", "kdeg")


@pytest.mark.slow
def test_the_implicit_method_fits_a_stiff_twin():
    """Binding 1e5 times faster than elimination (the explicit method stops, see above), binding
    and target turnover known: NUTS through the implicit solver's sensitivities runs without
    divergences and covers the truth of clearance, volume and target baseline."""
    truth = binding(1e5)
    spec = binding_known(1e5, KNOWN)
    times = np.array([0.04, 0.25, 1.0, 3.0, 6.9, 7.5, 10.0, 13.9, 17.0, 21.0, 28.0, 42.0])
    patient = simulate_patient(spec, truth, times, BOLUSES, seed=5)
    twin = fit(spec, patient, seed=3, draws=300, tune=300, chains=2, ladder=NO_LADDER)
    post = twin.idata["posterior"]
    assert int(twin.diagnostics.divergent) == 0
    for name in ("CL", "V", "R0"):
        lo, hi = np.quantile(post[name].values, [0.01, 0.99])
        assert lo < truth[name] < hi, (name, lo, hi)
