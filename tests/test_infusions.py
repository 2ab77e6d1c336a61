"""Zero-order infusions in patient data: read with units, predicted exactly, fitted quickly,
and taken by nonlinear ODE twins too.

Reference: the one-compartment infusion equations of Gibaldi & Perrier (1982, ch. 2),
written out below independently of the engine, which superposes closed-form unit-rate steps.
"""

import numpy as np
import pytest

import twinbayes as tb
from twinbayes import Patient, PatientDataError
from twinbayes.dynamics.design import design_for
from twinbayes.model.twin_model import TwinModel

HEADER = "time,time_unit,event,name,value,unit,duration\n"
CL, V = 4.0, 30.0
DOSES = [(0.0, 1000.0, 1.0), (12.0, 1000.0, 2.0)]
TIMES = np.array([0.5, 1.0, 2.0, 6.0, 11.5, 13.0, 14.5, 20.0])


def one_compartment_infusion(t: np.ndarray, doses, cl: float, v: float) -> np.ndarray:
    """C(t) = R/CL (1 - e^{-k tau}) during an infusion of rate R, then decaying with k = CL/V."""
    k, c = cl / v, np.zeros_like(t)
    for t0, amount, duration in doses:
        rate, tau = amount / duration, t - t0
        during, after = (tau > 0) & (tau <= duration), tau > duration
        c[during] += rate / cl * (1 - np.exp(-k * tau[during]))
        c[after] += rate / cl * (1 - np.exp(-k * duration)) * np.exp(-k * (tau[after] - duration))
    return c


def infused_patient(noise: float = 0.05, seed: int = 1) -> Patient:
    c = one_compartment_infusion(TIMES, DOSES, CL, V)
    y = c * np.exp(noise * np.random.default_rng(seed).standard_normal(c.size))
    return Patient.from_records(
        [(t, "concentration", v, "mg/L") for t, v in zip(TIMES, y)],
        [(t, "iv", a, "mg", d) for t, a, d in DOSES],
    )


def test_infusion_durations_are_read_from_csv_with_the_rows_time_unit(write):
    p = Patient.from_csv(
        write(
            "p.csv",
            HEADER
            + "0,h,dose,iv,1,g,1\n12,h,dose,iv,500,mg,\n720,min,observation,concentration,9.5,mg/L,\n"
            + "900,min,dose,iv,1000,mg,90\n",
        )
    )
    assert p.doses("iv", "mg", "h")[1].tolist() == [1000.0, 500.0, 1000.0]
    np.testing.assert_allclose(p.infusion_durations("iv", "h"), [1.0, 0.0, 1.5])
    np.testing.assert_allclose(p.infusion_durations("iv", "min"), [60.0, 0.0, 90.0])
    # a file without the column: every dose is a bolus, and the design keeps (times, amounts)
    spec = tb.load_spec("pk_1cmt_iv")
    bolus = Patient.from_records([(2.0, "concentration", 5.0, "mg/L")], [(0.0, "iv", 100.0, "mg")])
    assert len(design_for(spec, bolus).doses["iv"]) == 2
    assert len(design_for(spec, p).doses["iv"]) == 3


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "0,h,dose,iv,1000,mg,-1\n2,h,observation,concentration,5,mg/L,\n",
            "negative infusion duration",
        ),
        (
            "0,h,dose,iv,1000,mg,1\n2,h,observation,concentration,5,mg/L,1\n",
            "only dose rows have a duration",
        ),
        (
            "0,h,dose,iv,1000,mg,one\n2,h,observation,concentration,5,mg/L,\n",
            "'one' is not a number",
        ),
    ],
)
def test_bad_durations_name_line_and_column(write, rows, message):
    with pytest.raises(PatientDataError, match=message) as info:
        Patient.from_csv(write("bad.csv", HEADER + rows))
    assert "column 'duration'" in str(info.value) and "line" in str(info.value)


@pytest.mark.parametrize("spec_name", ["pk_1cmt_iv", "pk_2cmt_iv"])
def test_infusion_closed_forms_agree_with_the_matrix_exponential_and_radau(spec_name):
    """The route's `infusion` closed forms vs expm and vs SciPy Radau (rtol 1e-11), bolus and infusion."""
    from twinbayes.model.checks import check_exact_solution

    assert check_exact_solution(tb.load_spec(spec_name)) < 1e-9


def test_one_compartment_infusion_predictions_match_the_textbook_equations():
    spec = tb.load_spec("pk_1cmt_iv")
    design = design_for(spec, infused_patient())
    got = TwinModel.of(spec).means({"CL": np.array([CL]), "V": np.array([V])}, design)
    want = one_compartment_infusion(TIMES, DOSES, CL, V)
    np.testing.assert_allclose(got["concentration"][0], want, rtol=1e-12)


def test_a_twin_fitted_to_infusion_data_recovers_clearance_and_volume():
    twin = tb.fit(tb.load_spec("pk_1cmt_iv"), infused_patient(noise=0.05), seed=3)
    post = twin.idata["posterior"]
    assert twin.converged
    for name, truth in [("CL", CL), ("V", V)]:
        lo, hi = np.quantile(post[name].values, [0.025, 0.975])
        assert lo < truth < hi and hi / lo < 1.3, (name, lo, hi)
    assert twin.timings["sample"] < 20  # closed-form steps; the matrix exponential took ~50 s here


def test_a_nonlinear_twin_predicts_infusion_data_as_radau_does():
    """Michaelis-Menten elimination, the patient's infusions from the CSV columns, through the
    design and the twin's model (the path of a fit) against SciPy's Radau."""
    from twinbayes.dynamics.reference import solve_reference

    spec = tb.load_spec("pk_1cmt_iv_mm")
    design = design_for(spec, infused_patient())
    params = {"Vmax": 30.0, "Km": 4.0, "V": 25.0}
    got = TwinModel.of(spec).means({k: np.array([v]) for k, v in params.items()}, design)
    env = spec.evaluate_derived(params)
    ref = solve_reference(spec, env, TIMES, design.doses)["central"] / params["V"]
    np.testing.assert_allclose(got["concentration"][0], ref, rtol=1e-6)
