"""Covariates and fixed quantities in specs: read from the patient in the spec's units, clear errors."""

from pathlib import Path

import numpy as np
import pytest

from twinbayes import Patient, fit, load_spec, simulate_patient
from twinbayes.dynamics.design import design_for
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.inputs.patient import PatientDataError
from twinbayes.spec import SpecError

SPEC = load_spec(Path(__file__).parent / "data" / "pk_1cmt_iv_weight.toml")
ROWS = "subject,time,time_unit,event,name,value,unit\n1,0,h,dose,iv,10,mg\n1,2,h,observation,concentration,3.1,mg/L\n"


def _patient(tmp_path, covariate_rows: str) -> Patient:
    path = tmp_path / "infant.csv"
    path.write_text(ROWS + covariate_rows)
    return Patient.from_csv(path)


def test_fixed_values_and_covariate_references_are_typical_values():
    typical = SPEC.typical_values()
    assert typical["TVCL"] == 0.005 and typical["TVV"] == 1.0 and typical["weight"] == 3.0
    assert set(SPEC.parameters) == {
        "eta_CL",
        "eta_V",
        "sigma_prop",
    }  # fixed values are not estimated


def test_covariates_are_converted_to_the_spec_unit(tmp_path):
    grams = design_for(SPEC, _patient(tmp_path, "1,0,h,covariate,weight,2500,g\n"))
    assert grams.covariates == {"weight": pytest.approx(2.5, rel=1e-15)}


def test_a_missing_covariate_names_the_file_the_covariate_and_the_fix(tmp_path):
    with pytest.raises(PatientDataError) as err:
        design_for(SPEC, _patient(tmp_path, "1,0,h,covariate,age,3,d\n"))
    text = str(err.value)
    assert "infant.csv" in text and "'weight'" in text and "in kg" in text
    assert "add a row" in text and "covariate,weight,VALUE,kg" in text and "['age']" in text


def test_a_covariate_in_a_unit_of_another_dimension_is_refused(tmp_path):
    with pytest.raises(PatientDataError, match="cannot be converted to the 'kg'"):
        design_for(SPEC, _patient(tmp_path, "1,0,h,covariate,weight,2.5,h\n"))


def test_an_undeclared_covariate_is_an_unknown_symbol():
    text = SPEC.text.replace(
        '"TVCL * weight * exp(eta_CL)"', '"TVCL * weight * exp(eta_CL) * apgar"'
    )
    with pytest.raises(SpecError, match="apgar"):
        load_spec("x.toml", text=text)


def test_fixed_values_must_be_finite_numbers():
    text = SPEC.text.replace("value = 0.005", 'value = "0.005"')
    with pytest.raises(SpecError, match=r"fixed\.TVCL\.value"):
        load_spec("x.toml", text=text)


def test_weight_scaled_clearance_is_recovered_for_a_small_patient():
    """A 2.5 kg patient with eta_CL = 0.3, eta_V = -0.2: the posterior of CL = TVCL * weight *
    exp(eta_CL) covers the truth 0.005 * 2.5 * e^0.3 = 0.01687 L/h (8 samples over 4 days, 5 % CV)."""
    truth = {"eta_CL": 0.3, "eta_V": -0.2, "sigma_prop": 0.05}
    times = np.array([1.0, 4, 12, 24, 36, 48, 72, 96])
    patient = simulate_patient(
        SPEC,
        truth,
        times,
        {"iv": (np.array([0.0]), np.array([20.0]))},
        seed=4,
        covariates={"weight": 2.5},
    )
    twin = fit(SPEC, patient, seed=5, draws=1000, tune=1000, chains=2, ladder=NO_LADDER)
    cl = twin.idata["posterior"]["CL"].values.ravel()
    expected = 0.005 * 2.5 * np.exp(0.3)
    lo, hi = np.quantile(cl, [0.025, 0.975])
    assert lo < expected < hi and abs(np.median(cl) / expected - 1) < 0.1
    v = twin.idata["posterior"]["V"].values.ravel()
    assert abs(np.median(v) / (1.0 * 2.5 * np.exp(-0.2)) - 1) < 0.1
