"""The RK4 engine for nonlinear specs without a closed form: accuracy, gradients, failures."""

import numpy as np
import pytest

from twinbayes import Patient, load_spec
from twinbayes.checks import check_ode_accuracy

from twinbayes.dynamics.predict import Design, design_for, predict_observations
from twinbayes.fit import build_model
from twinbayes.library import data_path
from twinbayes.spec import SpecError

# the bundled laws with their closed form removed: the engine has to integrate the RHS
AS_ODE = {
    "tumor_logistic": 'solution.V = "K * V0 / (V0 + (K - V0) * exp(-a * t))"',
    "tumor_gompertz": 'solution.V = "V0 * exp(a / b * (1 - exp(-b * t)))"',
    "tumor_bertalanffy": 'solution.V = "(a / b + (V0**(1 / 3) - a / b) * exp(-b * t / 3))**3"',
}


def ode_spec(name, extra=""):
    return load_spec(f"{name}_ode.toml", text=load_spec(name).text.replace(AS_ODE[name], 'initial.V = "V0"' + extra))


@pytest.mark.parametrize("name", sorted(AS_ODE))
def test_rk4_matches_solve_ivp_and_the_closed_form(name):
    spec = ode_spec(name)
    assert check_ode_accuracy(spec) < 1e-4  # against scipy Radau, tight tolerances
    exact = load_spec(name)
    params = exact.typical_values()
    design = Design({"volume": np.array([2.0, 5.5, 9.0, 14.0, 24.0])}, {}, {})
    got = predict_observations(spec, params, design)["volume"]
    want = predict_observations(exact, params, design)["volume"]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    draws = {k: v * np.exp(np.random.default_rng(0).normal(0, 0.1, 6)) for k, v in params.items()}
    batch = predict_observations(spec, draws, design)["volume"]
    single = [predict_observations(spec, {k: v[i] for k, v in draws.items()}, design)["volume"] for i in range(6)]
    np.testing.assert_allclose(batch, single, rtol=1e-13)


def test_gradient_of_the_log_density_matches_finite_differences():
    spec = ode_spec("tumor_logistic", "\nmax_step = 0.5")
    model = build_model(spec, design_for(spec, Patient.from_csv(data_path("benzekry_llc_tumor_volume.csv"), subject=2)))
    logp, dlogp = model.compile_logp(mode="NUMBA"), model.compile_dlogp(mode="NUMBA")
    point = {k: v + 0.3 for k, v in model.initial_point().items()}
    eps = 1e-6
    fd = []
    for k in point:
        up, down = dict(point), dict(point)
        up[k] = up[k] + eps
        down[k] = down[k] - eps
        fd.append((logp(up) - logp(down)) / (2 * eps))
    np.testing.assert_allclose(dlogp(point), fd, rtol=1e-6, atol=1e-6)


def test_time_grid_contains_every_time_and_respects_the_step():
    grid, idx = time_grid(np.array([0.7, 3.0, 3.0, 10.0]), 0.4)
    assert grid[0] == 0 and np.all(np.diff(grid) <= 0.4 + 1e-12)
    np.testing.assert_array_equal(grid[idx], [0.7, 3.0, 3.0, 10.0])


def test_blow_up_gives_non_finite_values_not_a_crash(spec_text):
    text = load_spec("tumor_gompertz").text.replace(AS_ODE["tumor_gompertz"], 'initial.V = "V0"').replace(
        'rhs.V = "(a - b * log(V / V0)) * V"', 'rhs.V = "a * V * V"'
    )
    spec = load_spec("explodes.toml", text=text)
    mu = predict_observations(spec, {"V0": 10.0, "a": 5.0, "b": 0.1, "sigma": 0.1}, Design({"volume": np.array([1.0, 20.0])}, {}, {}))["volume"]
    assert not np.all(np.isfinite(mu))


def test_nonlinear_specs_need_initial_values_and_take_no_doses(spec_text):
    no_init = load_spec("tumor_gompertz").text.replace(AS_ODE["tumor_gompertz"], "")
    with pytest.raises(SpecError, match="dynamics.initial: a nonlinear ODE without closed form needs an initial value"):
        load_spec("x.toml", text=no_init)
    dosed = spec_text(**{"linear = true": "linear = false", 'solution.depot = "exp(-ka * tad)"\n': "", 'solution.central = "ka / (ka - ke) * (exp(-ke * tad) - exp(-ka * tad))"\n': ""})
    with pytest.raises(SpecError, match="routes: doses into nonlinear ODEs are not supported yet"):
        load_spec("y.toml", text=dosed)
