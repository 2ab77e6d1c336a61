"""Population twins: the [population] section, a published population prior for one infant
(checked against NONMEM's individual estimates), and the hierarchical fit of a cohort (checked
against NONMEM's population estimates; slow).

Reference: NONMEM 7.4.2, FOCE with interaction, on the phenobarbital neonate data (Grasela & Donn
1985; 59 infants, 155 levels), as stored in pharmpy/pharmpy ``tests/testdata/nonmem/pheno_real.lst``
(estimates and standard errors) and its individual estimates as asserted in pharmpy's tests
(``test_individual_estimates``: ETA of infants 1 and 28; ``test_phi_table``: infant 11).
"""

import numpy as np
import pytest

from twinbayes import Patient, fit, load_spec
from twinbayes.spec.model_spec import SpecError

DATA = "bundled:phenobarbital.csv"

# NONMEM final estimates (THETA, OMEGA, SIGMA) and standard errors, pheno_real.lst
NONMEM = {
    "TVCL": (0.00469555, 2.10e-4),
    "TVV": (0.98426, 2.69e-2),
    "theta_asphyxia": (0.15892, 8.38e-2),
    "omega2_eta_CL": (0.029351, 1.34e-2),
    "omega2_eta_V": (0.027906, 7.48e-3),
    "sigma2_prop": (0.013241, 2.28e-3),
}
# NONMEM individual (empirical Bayes) estimates of (eta_CL, eta_V)
EBE = {"1": (-0.0438608, 0.00543031), "11": (0.0661505, 0.293685), "28": (7.75957e-04, 8.32311e-02)}


def nonmem_individual(patient, eta_cl, eta_v):
    """CL and V of one infant from NONMEM's population values and its deviations."""
    th = {k: NONMEM[k][0] for k in ("TVCL", "TVV", "theta_asphyxia")}
    w, asph = patient.covariate("weight", "kg"), patient.covariate("asphyxia", "1")
    cl = th["TVCL"] * w * np.exp(eta_cl)
    v = th["TVV"] * w * (1 + th["theta_asphyxia"] * asph) * np.exp(eta_v)
    return cl, v


POP_TEXT = load_spec("phenobarbital_neonate_pop").text


def with_population(block: str):
    start = POP_TEXT.index("[population]")
    end = POP_TEXT.index("[derived.CL]")
    return load_spec("variant.toml", text=POP_TEXT[:start] + block + "\n\n" + POP_TEXT[end:])


def test_correlated_deviations_have_the_declared_covariance():
    spec = with_population(
        '[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3, 0.2]\n'
        "correlation = [[1.0, 0.6], [0.6, 1.0]]"
    )
    omega = np.array([[0.09, 0.6 * 0.06], [0.6 * 0.06, 0.04]])
    # the deviations as derived quantities of the standard-normal parameters: eta = L z
    L = np.column_stack(
        [
            [
                spec.derived[e].expression({"eta_CL_z": float(j == 0), "eta_V_z": float(j == 1)})
                for e in ("eta_CL", "eta_V")
            ]
            for j in range(2)
        ]
    )
    np.testing.assert_allclose(L @ L.T, omega, rtol=1e-12)
    assert spec.parameters["eta_CL_z"].prior.kwargs == {"mu": 0.0, "sigma": 1.0}


@pytest.mark.parametrize(
    "block, field, words",
    [
        (
            '[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3, 0.2]\n'
            "correlation = [[1.0, 1.2], [1.2, 1.0]]",
            "population.correlation",
            "[-1, 1]",
        ),
        (
            '[population]\netas = ["a1", "a2", "a3"]\nsd = [0.3, 0.2, 0.1]\n'
            "correlation = [[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]",
            "population.correlation",
            "not positive definite",
        ),
        (
            '[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3, 0.2]\n'
            "correlation = [[1.0, 0.5], [0.4, 1.0]]",
            "population.correlation",
            "symmetric",
        ),
        ('[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3]', "population.sd", "2 finite"),
        ('[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3, -0.2]', "population.sd", "> 0"),
        (
            '[population]\netas = ["eta_CL", "TVCL"]\nsd = [0.3, 0.2]',
            "population.etas",
            "already used",
        ),
    ],
)
def test_bad_population_sections_are_refused_with_the_field(block, field, words):
    with pytest.raises(SpecError) as err:
        with_population(block)
    assert err.value.field == field and words in str(err.value)


@pytest.fixture(scope="module")
def infants():
    return {s: Patient.from_csv(DATA, subject=s) for s in EBE}


@pytest.mark.parametrize("subject", sorted(EBE))
def test_population_prior_twin_matches_nonmem_individual_estimates(infants, subject):
    """One infant (1 to 2 levels) with the published population prior: posterior medians of CL and
    V within 2 % of NONMEM's empirical Bayes estimates (the posterior mode; the posterior of a
    log-normal deviation with few levels is nearly symmetric on the log scale)."""
    patient = infants[subject]
    twin = fit(load_spec("phenobarbital_neonate_nonmem"), patient, seed=1)
    assert twin.converged
    post = twin.idata["posterior"]
    cl_ref, v_ref = nonmem_individual(patient, *EBE[subject])
    assert float(post["CL"].median()) == pytest.approx(cl_ref, rel=0.02)
    assert float(post["V"].median()) == pytest.approx(v_ref, rel=0.02)


CORRELATED = (
    '[population]\netas = ["eta_CL", "eta_V"]\nsd = [0.3, 0.3]\n'
    "correlation = [[1.0, 0.7], [0.7, 1.0]]\n"
    'sd_prior = { distribution = "halfnormal", sigma = 0.5 }'
)


def test_a_cohort_fit_needs_a_population_section(infants):
    from twinbayes.fitting.population import fit_population

    with pytest.raises(SpecError, match="no \\[population\\] section"):
        fit_population("pk_1cmt_iv", list(infants.values()))


@pytest.mark.slow  # a cohort model's compilation: about a minute
def test_a_cohort_fit_gates_every_deviation_and_escalates(infants):
    """Three infants, a warm-up far too short: the gate judges each infant's deviations too
    (``eta_CL[0]`` ...), and the ladder escalates with the single-twin rules, every attempt
    recorded."""
    import json

    from twinbayes.fitting.ladder import Ladder, Rung
    from twinbayes.fitting.population import fit_population

    pop = fit_population(
        "phenobarbital_neonate_pop",
        list(infants.values()),
        seed=3,
        draws=100,
        tune=10,
        chains=2,
        ladder=Ladder((Rung(0.95, 2.0, 1.0),)),
    )
    names = list(pop.diagnostics.table.parameter.values)
    assert {"TVCL", "omega_eta_CL", "eta_CL[0]", "eta_V[2]"} <= set(names)
    attempts = json.loads(pop.idata.attrs["gate_attempts"])
    assert len(attempts) == 2 and not attempts[0]["passed"]  # 10 warm-up steps cannot pass
    assert attempts[1]["tune"] == 20


def test_correlated_deviations_get_an_lkj_prior_in_the_cohort_model(infants):
    """A spec with a correlation matrix asks for a full Omega: LKJ Cholesky prior, one named
    correlation per pair, eta = z L^T; without one the deviations stay independent."""
    from twinbayes.dynamics.design import design_for
    from twinbayes.fitting.population import correlation_names, population_model

    spec = with_population(CORRELATED)
    patients = list(infants.values())
    model = population_model(
        spec, [design_for(spec, p) for p in patients], [p.label for p in patients]
    )
    free = {v.name for v in model.free_RVs}
    assert "omega_chol" in free and not any(n.startswith("omega_eta") for n in free)
    assert correlation_names(spec) == ["corr_eta_CL_eta_V"]
    assert {"omega_eta_CL", "omega_eta_V", "corr_eta_CL_eta_V", "omega_corr"} <= set(
        model.named_vars
    )
    point = model.initial_point()
    fn = model.compile_fn(  # Python implementations: no C compilation for one evaluation
        [model["eta"], model["omega_corr"]],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode="FAST_COMPILE",
    )
    eta, corr = fn(point)
    assert eta.shape == (len(patients), 2) and np.allclose(np.diag(corr), 1.0)
    independent = load_spec("phenobarbital_neonate_pop")
    assert correlation_names(independent) == []
    model = population_model(
        independent, [design_for(independent, p) for p in patients], [p.label for p in patients]
    )
    assert {"omega_eta_CL", "omega_eta_V"} <= {v.name for v in model.free_RVs}


@pytest.mark.slow
def test_a_correlated_cohort_fit_recovers_the_correlation_of_the_deviations():
    """60 simulated infants (weights 0.6-3.5 kg, 4 levels over 10 days after 20 mg/kg) from the pheno model
    with deviations of SD 0.3 correlated 0.7: the 90 % intervals cover the truth, the correlation's
    excludes 0, and the individual spec carries the estimated correlation."""
    from twinbayes.fitting.population import fit_population
    from twinbayes.model.simulate import simulate_patient

    spec = with_population(CORRELATED)
    truth = {"TVCL": 0.0047, "TVV": 0.98, "theta_asphyxia": 0.16, "sigma_prop": 0.1}
    rng = np.random.default_rng(7)
    patients = []
    for i in range(60):
        w, a = float(rng.uniform(0.6, 3.5)), float(rng.random() < 0.3)
        z = {"eta_CL_z": rng.standard_normal(), "eta_V_z": rng.standard_normal()}
        patients.append(
            simulate_patient(
                spec,
                {**truth, **z},
                np.array([2.0, 48.0, 120.0, 240.0]),  # the half-life is ~6 days
                {"iv": (np.array([0.0]), np.array([20.0 * w]))},
                seed=i,
                subject=str(i + 1),
                covariates={"weight": w, "asphyxia": a},
            )
        )
    # the correlation mixes slower than the rest: 1000 draws per chain left its bulk ESS at ~330
    pop = fit_population(spec, patients, seed=1, draws=2000)
    print(pop.summary())
    assert pop.converged, pop.diagnostics.reasons
    est = pop.summary()
    for name, value in {
        **truth,
        "omega_eta_CL": 0.3,
        "omega_eta_V": 0.3,
        "corr_eta_CL_eta_V": 0.7,
    }.items():
        _, lo, hi = est[name]
        assert lo < value < hi, (name, est[name], value)
    assert est["corr_eta_CL_eta_V"][1] > 0.2
    individual = pop.individual_spec()
    r = individual.population.correlation[0, 1]
    assert abs(r - est["corr_eta_CL_eta_V"][0]) < 0.1 and np.all(
        np.linalg.eigvalsh(individual.population.correlation) > 0
    )


@pytest.mark.slow
def test_phenobarbital_cohort_fit_matches_nonmem_and_gives_the_individual_prior():
    """59 infants: posterior medians within 2 NONMEM standard errors of NONMEM's estimates (FOCE-I
    and full Bayes differ most on the shrunken clearance variability); the gate passes; the
    population prior it gives reproduces NONMEM's individual estimates of three infants within 5 %."""
    from twinbayes.fitting.population import fit_population, subjects_in

    patients = [Patient.from_csv(DATA, subject=s) for s in subjects_in(DATA)]
    assert len(patients) == 59 and sum(p.data.sizes["obs"] for p in patients) == 155
    pop = fit_population("phenobarbital_neonate_pop", patients, seed=1)
    assert pop.converged, pop.diagnostics.reasons
    est = pop.summary()
    ours = {
        "TVCL": est["TVCL"][0],
        "TVV": est["TVV"][0],
        "theta_asphyxia": est["theta_asphyxia"][0],
        "omega2_eta_CL": est["omega_eta_CL"][0] ** 2,
        "omega2_eta_V": est["omega_eta_V"][0] ** 2,
        "sigma2_prop": est["sigma_prop"][0] ** 2,
    }
    for name, (ref, se) in NONMEM.items():
        assert abs(ours[name] - ref) < 2 * se, (name, ours[name], ref, se)
    individual = pop.individual_spec()
    assert set(individual.fixed_values()) >= {"TVCL", "TVV", "theta_asphyxia", "sigma_prop"}
    # must-show 6 of issue 36: the new infant's prior SD of log CL matches, within 5 %, the SD of
    # the predictive distribution of a new infant's log CL from the cohort's posterior draws
    # (simulated here: eta_new ~ N(0, omega^2) for every draw, 20 new infants a draw)
    post = pop.idata["posterior"]
    tvcl, omega = (post[n].values.reshape(-1) for n in ("TVCL", "omega_eta_CL"))
    rng = np.random.default_rng(6)
    eta_new = rng.standard_normal((20, tvcl.size)) * omega
    predictive_sd = np.std(np.log(tvcl * 1.3) + eta_new)  # at the reference weight, 1.3 kg
    assert individual.population.sd[0] == pytest.approx(predictive_sd, rel=0.05)
    assert individual.population.sd[0] > est["omega_eta_CL"][0] * 1.02  # not the median of omega
    for subject, etas in EBE.items():
        patient = Patient.from_csv(DATA, subject=subject)
        twin = fit(individual, patient, seed=2)
        assert twin.converged
        cl_ref, v_ref = nonmem_individual(patient, *etas)
        assert float(twin.idata["posterior"]["CL"].median()) == pytest.approx(cl_ref, rel=0.05)
        assert float(twin.idata["posterior"]["V"].median()) == pytest.approx(v_ref, rel=0.05)
        # the cohort posterior of the same infant agrees too
        assert float(np.median(pop.individual(subject, "CL"))) == pytest.approx(cl_ref, rel=0.05)
        assert float(np.median(pop.individual(subject, "V"))) == pytest.approx(v_ref, rel=0.05)


def test_the_console_shows_a_population_twins_individual_quantities(infants):
    from twinbayes.run.pipeline import summary_table

    twin = fit(load_spec("phenobarbital_neonate_nonmem"), infants["28"], seed=1)
    table = summary_table([twin])
    rows = table.splitlines()[1:]
    shown = [rows[0].split()[1]] + [
        row.split()[0] for row in rows[1:]
    ]  # first row starts with the twin
    assert shown == ["eta_CL", "eta_V", "CL", "V", "ke"]
    assert twin.name in table.splitlines()[1] and "passed" in table.splitlines()[1]
