"""The ODE engine for nonlinear specs: accuracy vs solve_ivp, sensitivities, gradients, failures, forcing."""

import ast
import warnings

import numpy as np
import pytest

from twinbayes import Patient, load_spec
from twinbayes.dynamics.design import Design, design_for
from twinbayes.dynamics.ode import Forcing, OdeError, ode_system, solve
from twinbayes.fitting.twin import build_model
from twinbayes.inputs.library import data_path, list_specs
from twinbayes.inputs.patient import PatientDataError
from twinbayes.model.checks import check_ode_accuracy
from twinbayes.model.prediction import predict_observations
from twinbayes.spec import SpecError

# the bundled laws with their closed form removed: the engine has to integrate the RHS
AS_ODE = {
    "tumor_logistic": 'solution.V = "K * V0 / (V0 + (K - V0) * exp(-a * t))"',
    "tumor_gompertz": 'solution.V = "V0 * exp(a / b * (1 - exp(-b * t)))"',
    "tumor_bertalanffy": 'solution.V = "(a / b + (V0**(1 / 3) - a / b) * exp(-b * t / 3))**3"',
}

# every bundled spec without a closed form, with the data that drive it
DATA = {
    "glucose": ["ivgtt_pacini_bergman_1986.csv"],
    "windkessel": ["mimicdb041_abp_assumed_inflow.csv", "windkessel_simulated_pressure_flow.csv"],
}
NONLINEAR = [
    (name, f)
    for name in list_specs()
    for family, files in DATA.items()
    if name.startswith(family)
    for f in files
]


def ode_spec(name, extra=""):
    return load_spec(
        f"{name}_ode.toml",
        text=load_spec(name).text.replace(AS_ODE[name], 'initial.V = "V0"' + extra),
    )


# dosed nonlinear specs: checked against Radau with doses in tests/test_nonlinear_doses.py and
# tests/test_pkpd_and_parallel_elimination.py; the stiff full TMDD in tests/test_stiff.py
DOSED = {
    "warfarin_pkpd_turnover",  # and in tests/test_warfarin.py, on real data
    "tmdd_full_iv",
    "pk_1cmt_iv_mm",
    "pk_1cmt_oral_mm",
    "pk_1cmt_oral_linear_mm",
    "pk_2cmt_iv_mm",
    "indirect_response_inhibition",
    "tmdd_qss_iv",
}


def test_every_bundled_spec_without_closed_form_is_covered():
    open_form = {n for n in list_specs() if not (load_spec(n).solution or load_spec(n).linear)}
    assert open_form == {n for n, _ in NONLINEAR} | DOSED and len(open_form) == 14


@pytest.mark.parametrize("name, data", NONLINEAR)
def test_engine_matches_solve_ivp_on_bundled_nonlinear_specs(name, data):
    spec = load_spec(name)
    design = design_for(spec, Patient.from_csv(data_path(data)))
    assert (
        check_ode_accuracy(spec, design) < 1e-4
    )  # scipy Radau, rtol 1e-11, restarted at every input knot


@pytest.mark.parametrize("name", sorted(AS_ODE))
def test_engine_matches_solve_ivp_and_the_closed_form(name):
    spec = ode_spec(name)
    assert check_ode_accuracy(spec) < 1e-4
    exact = load_spec(name)
    params = exact.typical_values()
    design = Design({"volume": np.array([2.0, 5.5, 9.0, 14.0, 24.0])}, {}, {})
    got = predict_observations(spec, params, design)["volume"]
    want = predict_observations(exact, params, design)["volume"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    draws = {k: v * np.exp(np.random.default_rng(0).normal(0, 0.1, 6)) for k, v in params.items()}
    batch = predict_observations(spec, draws, design)["volume"]
    single = [
        predict_observations(spec, {k: v[i] for k, v in draws.items()}, design)["volume"]
        for i in range(6)
    ]
    np.testing.assert_allclose(batch, single, rtol=1e-13)


def _solver_inputs(spec, design, rng):
    env = (
        spec.evaluate_derived(
            {k: v * float(np.exp(rng.uniform(-0.3, 0.3))) for k, v in spec.typical_values().items()}
        )
        | design.baselines
    )
    system = ode_system(spec)
    times = np.concatenate(list(design.times.values()))
    forcing = Forcing.build(times, design.inputs, system.inputs)
    p = np.array([env[q] for q in system.params])
    y0 = np.array([float(spec.initial[s](env)) for s in system.states])
    return system, forcing, p, y0


@pytest.mark.parametrize("name, data", NONLINEAR[::-1][:4] + [("tumor_gompertz", None)])
def test_sensitivities_match_finite_differences(name, data):
    """dY/d(y0, p) from the forward sensitivity equations vs central differences of the solution."""
    if data is None:
        spec, design = ode_spec(name), Design({"volume": np.array([3.0, 7.0, 12.0, 20.0])}, {}, {})
    else:
        spec = load_spec(name)
        design = design_for(spec, Patient.from_csv(data_path(data)))
    system, forcing, p, y0 = _solver_inputs(spec, design, np.random.default_rng(3))
    Y, S = solve(spec, p, y0, forcing, sens=True)
    x = np.concatenate([y0, p])
    n = len(y0)
    for j in range(len(x)):
        eps = 1e-6 * abs(x[j]) if x[j] != 0 else 1e-4  # QL(0) = 0 in windkessel4
        up, down = x.copy(), x.copy()
        up[j] += eps
        down[j] -= eps
        fd = (
            solve(spec, up[n:], up[:n], forcing)[0] - solve(spec, down[n:], down[:n], forcing)[0]
        ) / (2 * eps)
        # per state: 1e-4 of the sensitivity's size, or 1e-6 of the state's size per unit relative change of x_j
        tol = 1e-4 * np.abs(fd).max(axis=0) + 1e-6 * np.abs(Y).max(axis=0) / (abs(x[j]) or 1.0)
        assert np.all(np.abs(S[:, :, j] - fd) <= tol), (
            system.states,
            ([*system.states, *system.params])[j],
        )


def test_log_density_gradient_through_nutpies_numba_path_matches_finite_differences():
    spec = load_spec("glucose_minimal")
    model = build_model(
        spec, design_for(spec, Patient.from_csv(data_path("ivgtt_pacini_bergman_1986.csv")))
    )
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # an object-mode fallback (slow Python solver calls) would warn
        logp, dlogp = model.compile_logp(mode="NUMBA"), model.compile_dlogp(mode="NUMBA")
    point = {k: v + 0.1 for k, v in model.initial_point().items()}
    g = dlogp(point)
    fd = []
    for k in point:
        up, down = dict(point), dict(point)
        up[k], down[k] = up[k] + 1e-5, down[k] - 1e-5
        fd.append((logp(up) - logp(down)) / 2e-5)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-3)


def test_outputs_in_any_order_with_repeats_equal_sorted_ones():
    spec = ode_spec("tumor_logistic")
    params = spec.typical_values()
    t = np.array([14.0, 2.0, 9.0, 2.0, 24.0, 0.0])
    got = predict_observations(spec, params, Design({"volume": t}, {}, {}))["volume"]
    order = np.argsort(t, kind="stable")
    want = predict_observations(spec, params, Design({"volume": t[order]}, {}, {}))["volume"]
    np.testing.assert_array_equal(got[order], want)
    assert got[-1] == params["V0"]


def _explodes():
    text = (
        load_spec("tumor_gompertz")
        .text.replace(AS_ODE["tumor_gompertz"], 'initial.V = "V0"\nmax_steps = 500')
        .replace('rhs.V = "(a - b * log(V / V0)) * V"', 'rhs.V = "a * V * V"')
    )
    return load_spec("explodes.toml", text=text)


def test_blow_up_is_reported_not_silent():
    spec = _explodes()
    design = Design({"volume": np.array([1.0, 20.0])}, {}, {})
    draws = {
        "V0": np.array([10.0, 0.001]),
        "a": np.array([5.0, 0.01]),
        "b": np.array([0.1, 0.1]),
        "sigma": np.array([0.1, 0.1]),
    }
    mu = predict_observations(spec, draws, design)[
        "volume"
    ]  # posterior-draw path: failed solves are NaN
    assert np.all(np.isnan(mu[0])) and np.all(np.isfinite(mu[1]))
    with pytest.raises(OdeError, match=r"explodes.*(more than 500 steps|non-finite)"):
        predict_observations(spec, {k: v[0] for k, v in draws.items()}, design)


def test_blow_up_makes_the_log_density_non_finite_a_divergence_for_nuts():
    spec = _explodes()
    patient = Patient.from_records(
        [(1.0, "volume", 50.0, "mm3"), (20.0, "volume", 80.0, "mm3")], time_unit="d"
    )
    model = build_model(spec, design_for(spec, patient))
    logp = model.compile_logp(mode="NUMBA")
    point = model.initial_point()
    point["a_log__"] = np.log(5.0)
    assert not np.isfinite(logp(point))


def test_generated_code_holds_only_arithmetic_slots_and_math():
    spec = load_spec("glucose_minimal_delay")
    tree = ast.parse(ode_system(spec).source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    allowed = {
        "t",
        "y",
        "p",
        "u",
        "out",
        "jy",
        "jp",
        "math",
        "min",
        "max",
        "abs",
        "_sigmoid",
        "_step",
        "_sign",
    }
    assert {n for n in names if not n.startswith("_c")} <= allowed
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert attrs <= {"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh"}
    assert not any(
        isinstance(n, (ast.Import, ast.ImportFrom, ast.Call))
        and getattr(getattr(n, "func", None), "id", "") in {"eval", "exec", "open", "__import__"}
        for n in ast.walk(tree)
    )


def test_forcing_that_does_not_cover_the_observations_is_a_clear_error():
    spec = load_spec("glucose_minimal")
    rows = [(t, "glucose", 100.0, "mg/dL") for t in (10.0, 20.0, 60.0)]
    short = Patient.from_records(
        rows,
        inputs=[(0.0, "insulin", 11.0, "uU/mL"), (30.0, "insulin", 20.0, "uU/mL")],
        time_unit="min",
        subject="s",
    )
    with pytest.raises(
        PatientDataError, match=r"series 'insulin'.*input 'I'.*must cover 0 to 60 min"
    ):
        design_for(spec, short)
    missing = Patient.from_records(rows, time_unit="min", subject="s")
    with pytest.raises(
        PatientDataError,
        match=r"no series 'insulin' to drive the model; add 'input' or 'observation' rows",
    ):
        design_for(spec, missing)


def test_input_specs_are_validated(spec_text):
    base = load_spec("glucose_minimal").text
    with pytest.raises(
        SpecError, match=r"dynamics.rtol: must be a relative tolerance in \(0, 0.01\]"
    ):
        load_spec("x.toml", text=base.replace('initial.X = "0"', 'initial.X = "0"\nrtol = 0.5'))
    with pytest.raises(SpecError, match=r"dynamics.rhs.G: unknown symbol .*'Insulin'"):
        load_spec("x.toml", text=base.replace("(SG + X) * G", "(SG + X + Insulin) * G"))
    linear_forced = spec_text(
        **{"[states.depot]": '[inputs.u]\nunit = "mg/h"\ndescription = "x"\n\n[states.depot]'}
    )
    with pytest.raises(SpecError, match="inputs: forcing inputs need ODE dynamics"):
        load_spec("y.toml", text=linear_forced)


def test_nonlinear_specs_need_initial_values_and_take_lagged_doses(spec_text):
    no_init = load_spec("tumor_gompertz").text.replace(AS_ODE["tumor_gompertz"], "")
    with pytest.raises(
        SpecError,
        match="dynamics.initial: a nonlinear ODE without closed form needs an initial value",
    ):
        load_spec("x.toml", text=no_init)
    dosed = spec_text(
        **{
            "linear = true": "linear = false",
            'solution.depot = "exp(-ka * tad)"\n': "",
            'solution.central = "ka / (ka - ke) * (exp(-ke * tad) - exp(-ka * tad))"\n': "",
        }
    )
    with pytest.raises(SpecError, match="dynamics.initial: a nonlinear ODE without closed form"):
        load_spec("y.toml", text=dosed)  # doses are accepted, initial values still needed
    lagged = dosed.replace(
        '[routes.oral]\nstate = "depot"', '[routes.oral]\nstate = "depot"\nlag = "ka"'
    )
    assert lagged != dosed
    initial = 'linear = false\ninitial.depot = "0"\ninitial.central = "0"'
    spec = load_spec("z.toml", text=lagged.replace("linear = false", initial))
    assert (
        spec.routes["oral"].lag is not None
    )  # lag and bioavailability: tests/test_nonlinear_doses.py


def test_a_stiff_system_is_reported_as_stiff():
    text = (
        load_spec("tumor_gompertz")
        .text.replace(AS_ODE["tumor_gompertz"], 'initial.V = "V0"\nmax_steps = 2000')
        .replace(
            'rhs.V = "(a - b * log(V / V0)) * V"', 'rhs.V = "-a * 1e7 * (V - V0 * (1 + b * t))"'
        )
    )
    spec = load_spec("stiff.toml", text=text)
    with pytest.raises(
        OdeError,
        match=r"stiff.toml\): the ODE solve is stiff: at t = .* d the Jacobian has an eigenvalue of "
        r"magnitude 5e\+06 /d.*dynamics.max_steps = 2000\). Declare method = \"implicit\"",
    ):
        predict_observations(
            spec,
            {"V0": 10.0, "a": 0.5, "b": 0.1, "sigma": 0.1},
            Design({"volume": np.array([1.0, 20.0])}, {}, {}),
        )


def test_spec_edited_in_memory_gets_a_fresh_compiled_system():
    """The compiled system follows the spec's expressions, not its file text (``dataclasses.replace``)."""
    import dataclasses

    from twinbayes.spec.expr import compile_expression

    spec = ode_spec("tumor_gompertz")
    allowed = spec.rhs["V"]._allowed
    faster = dataclasses.replace(
        spec, rhs={"V": compile_expression(f"2 * ({spec.rhs['V'].source})", allowed)}
    )
    assert (
        faster.sha256 == spec.sha256
    )  # same text: a cache keyed on it would return the old system
    assert ode_system(faster) is not ode_system(spec)
    assert "2.0" in ode_system(faster).source
    design = Design({"volume": np.array([3.0, 7.0])}, {}, {})
    params = spec.typical_values()
    slow = predict_observations(spec, params, design)["volume"]
    fast = predict_observations(faster, params, design)["volume"]
    assert np.all(fast > slow)  # doubled growth rate: larger volumes, from the edited system
    assert ode_system(dataclasses.replace(spec)) is ode_system(spec)  # same content: compiled once
