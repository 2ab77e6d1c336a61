"""Two bundled specs of issue #16: parallel first-order + Michaelis-Menten elimination
(``pk_1cmt_oral_linear_mm``, a nonlinear ODE; its Radau comparisons with repeated boluses and
infusions and its sensitivities against finite differences are in tests/test_nonlinear_doses.py)
and a PK/PD Emax model with an effect compartment (``pkpd_1cmt_iv_emax_effect``, linear
dynamics, nonlinear observation).

References: SciPy's Radau (``solve_reference``, rtol 1e-11) with the doses as restarts; for the
effect compartment after a bolus, the closed form of Sheiner et al. (1979),
Ce(t) = D/V * ke0/(ke0 - ke) * (exp(-ke t) - exp(-ke0 t)); parameter recovery from simulated
patients (slow)."""

import numpy as np
import pytest

from twinbayes import fit, load_spec, simulate_patient
from twinbayes.dynamics.linear import state_amounts
from twinbayes.dynamics.ode import ode_trajectories
from twinbayes.dynamics.reference import solve_reference
from twinbayes.fitting.ladder import NO_LADDER

PARALLEL = load_spec("pk_1cmt_oral_linear_mm")
MM_ONLY = load_spec("pk_1cmt_oral_mm")
PKPD = load_spec("pkpd_1cmt_iv_emax_effect")
TRUTH_PARALLEL = {"ka": 1.2, "CL": 1.5, "Vmax": 30.0, "Km": 4.0, "V": 25.0, "sigma_prop": 0.1}
TRUTH_PKPD = {"CL": 4.0, "V": 12.0, "ke0": 0.7, "E0": 10.0, "Emax": 25.0, "EC50": 3.0,
              "sigma_prop": 0.08, "sigma_E": 1.0}  # fmt: skip
DOSES = (np.array([0.0, 12.0, 24.0, 36.0]), np.array([600.0, 300.0, 300.0, 300.0]))
INFUSIONS = (*DOSES, np.array([1.0, 2.0, 0.5, 0.0]))  # three infusions, then a bolus
TIMES = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 11.9, 12.0, 12.1, 18.0, 24.0, 30.0, 36.0, 40.0, 60.0])


def test_parallel_elimination_sits_between_linear_and_saturable_exposure():
    """AUC grows more than in proportion to the dose, less than with saturable elimination alone."""
    grid = np.linspace(0.0, 72.0, 721)

    def auc(spec, amount):
        env = spec.evaluate_derived({k: TRUTH_PARALLEL[k] for k in spec.parameters})
        c = ode_trajectories(spec, env, grid, ["central"], doses={"oral": ([0.0], [amount])})
        return np.trapezoid(c["central"] / env["V"], grid)

    parallel = auc(PARALLEL, 800.0) / auc(PARALLEL, 200.0)
    saturable = auc(MM_ONLY, 800.0) / auc(MM_ONLY, 200.0)
    assert 4.0 < parallel < saturable, (parallel, saturable)


def test_effect_site_concentration_has_the_closed_form_of_sheiner_1979():
    env = PKPD.evaluate_derived(TRUTH_PKPD)
    t = np.linspace(0.25, 24.0, 96)  # a dose at 0 acts from just after 0 (superposition convention)
    ours = state_amounts(PKPD, env, t, {"iv": ([0.0], [100.0])})
    ke, ke0, V = env["ke"], env["ke0"], env["V"]
    closed = 100.0 / V * ke0 / (ke0 - ke) * (np.exp(-ke * t) - np.exp(-ke0 * t))
    np.testing.assert_allclose(ours["Ce"], closed, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours["central"], 100.0 * np.exp(-ke * t), rtol=1e-12)
    assert t[np.argmax(ours["Ce"])] > 0.5  # hysteresis: the effect site peaks after plasma


@pytest.mark.parametrize("doses", [DOSES, INFUSIONS], ids=["boluses", "infusions"])
def test_pkpd_states_match_radau_with_repeated_doses(doses):
    env = PKPD.evaluate_derived(TRUTH_PKPD)
    ours = state_amounts(PKPD, env, TIMES, {"iv": doses})
    ref = solve_reference(PKPD, env, TIMES, {"iv": doses})
    for s in PKPD.states:
        assert np.abs(ours[s] - ref[s]).max() < 1e-6 * np.abs(ref[s]).max(), s


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, truth, route, doses, times, check",
    [
        (
            PARALLEL,
            TRUTH_PARALLEL,
            "oral",
            ([0.0, 12.0, 24.0], [1200.0, 200.0, 200.0]),
            [0.5, 1.0, 2.0, 4.0, 8.0, 11.5, 14.0, 23.5, 26.0, 30.0, 36.0, 48.0],
            ("CL", "V"),
        ),
        (
            PKPD,
            TRUTH_PKPD,
            "iv",
            ([0.0, 8.0], [60.0, 60.0]),
            [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 7.9, 8.5, 10.0, 12.0, 16.0],
            ("ke0", "EC50", "Emax", "CL"),
        ),
    ],  # fmt: skip
    ids=["parallel", "pkpd"],
)
def test_parameters_are_recovered_from_a_simulated_patient(spec, truth, route, doses, times, check):
    """Known truth, one simulated patient: each checked parameter inside its 98 % interval."""
    dosing = {route: tuple(np.array(x, float) for x in doses)}
    patient = simulate_patient(spec, truth, np.array(times), dosing, seed=5)
    twin = fit(spec, patient, seed=3, draws=1000, tune=1000, chains=4, ladder=NO_LADDER)
    post = twin.idata["posterior"]
    assert int(twin.diagnostics.divergent) == 0
    for name in check:
        lo, hi = np.quantile(post[name].values, [0.01, 0.99])
        assert lo < truth[name] < hi, (name, lo, truth[name], hi)


@pytest.mark.slow  # a fit and two scenario simulations: 40-80 s
def test_scenarios_predict_the_observable_asked_for():
    """``disagreement(observable=...)``, which ``[predictions] observable`` sets, predicts that
    observable (here the Emax effect, not the concentration)."""
    from twinbayes import Scenario, disagreement

    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0])
    patient = simulate_patient(PKPD, TRUTH_PKPD, times, {"iv": ([0.0], [100.0])}, seed=4)
    twin = fit(PKPD, patient, seed=1, draws=200, tune=200, chains=2, ladder=NO_LADDER)
    scenario = [Scenario.regimen("100 mg", 100.0, "iv", interval=24, n_doses=1)]
    grid = np.array([0.0, 6.0, 24.0])
    by = {
        o: disagreement([twin], {twin.name: 1.0}, scenario, grid, observable=o)
        for o in ("effect", "concentration")
    }
    effect, conc = (by[o].data["traj_q50"].values[0, 0] for o in ("effect", "concentration"))
    assert by["effect"].data.attrs["observable"] == "effect"
    assert 10.0 <= effect[1] <= 35.0 and effect[0] == pytest.approx(effect[2], abs=2.0)  # E0 + Emax
    assert conc[1] < 5.0 < effect[1]


def test_a_study_names_the_observable_every_twin_must_model(tmp_path):
    """``[predictions] observable`` is read, and refused before any fit where a twin lacks it."""
    from twinbayes.run.pipeline import _check_observable
    from twinbayes.run.study import load_study
    from twinbayes.spec.model_spec import SpecError

    study_file = tmp_path / "study.toml"
    study_file.write_text(
        '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:indometacin.csv"\nsubject = "1"\n'
        '[twins]\nspecs = ["pk_1cmt_iv"]\n[predictions]\nobservable = "effect"\n'
        "times = { start = 0, stop = 24, step = 1 }\n"
    )
    study = load_study(study_file)
    assert study.observable == "effect"
    _check_observable(study, [PKPD])
    with pytest.raises(
        SpecError, match=r"predictions\.observable.*'pk_1cmt_iv' has no observable 'effect'"
    ):
        _check_observable(study, [PKPD, load_spec("pk_1cmt_iv")])
