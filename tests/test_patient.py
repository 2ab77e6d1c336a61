"""Patient data: the bundled studies load with units; bad files give clear errors."""

import numpy as np
import pytest

from twinbayes import Patient, PatientDataError
from twinbayes.inputs.library import data_path

HEADER = "subject,time,time_unit,event,name,value,unit\n"
GOOD = (
    HEADER
    + "7,0,h,dose,oral,320,mg\n7,0.5,h,observation,concentration,4.1,mg/L\n7,2,h,observation,concentration,7.9,mg/L\n"
)


def test_theophylline_subject_1_matches_the_published_table():
    p = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    t, y = p.observations("concentration", "mg/L", "h")
    # Boeckmann, Sheiner & Beal (1994); R datasets::Theoph, Subject 1
    np.testing.assert_allclose(t, [0, 0.25, 0.57, 1.12, 2.02, 3.82, 5.10, 7.03, 9.05, 12.12, 24.37])
    np.testing.assert_allclose(
        y, [0.74, 2.84, 6.57, 10.5, 9.66, 8.58, 8.36, 7.47, 6.89, 5.94, 3.28]
    )
    td, dose = p.doses("oral", "mg", "h")
    np.testing.assert_allclose(dose, [4.02 * 79.6], rtol=1e-4)
    assert p.covariate("weight", "kg") == 79.6
    assert (
        set(p.data.sizes) == {"obs", "dose", "input"}
        and p.data.sizes["input"] == 0
        and p.data.attrs["time_unit"] == "h"
    )


def test_units_are_converted_on_access(write):
    p = Patient.from_csv(
        write(
            "p.csv",
            HEADER + "1,0,min,dose,iv,0.025,g\n1,30,min,observation,concentration,1500,ng/mL\n",
        )
    )
    t, y = p.observations("concentration", "mg/L", "h")
    assert t.tolist() == [0.5] and y.tolist() == [1.5]
    assert p.doses("iv", "mg", "h")[1].tolist() == [25.0]
    p2 = Patient.from_csv(data_path("indometacin.csv"), subject=3)
    assert p2.routes == ["iv"] and p2.observations("concentration", "mg/L", "h")[1][0] == 2.72


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("", ["empty"]),
        (HEADER, ["no data rows"]),
        ("time,event,name,value,unit\n0,dose,oral,1,mg\n", ["missing column(s) time_unit"]),
        (GOOD.replace("7,2,h", "7,-2,h"), ["line 4", "'time'", "negative time"]),
        (GOOD.replace("7,0.5,h", "7,3,h"), ["line 4", "sort the rows"]),
        (GOOD.replace("7.9", "NaN"), ["line 4", "'value'", "'NaN'", "finite"]),
        (GOOD.replace("7.9", ""), ["line 4", "'value'", "not a number"]),
        (GOOD.replace("4.1,mg/L", "4.1,mg/furlong"), ["line 3", "'unit'", "furlong"]),
        (GOOD.replace("7,2,h", "7,2,hours"), ["line 4", "'time_unit'", "hours"]),
        (GOOD.replace("dose,oral", "dosing,oral"), ["line 2", "'event'", "dosing"]),
        (
            HEADER + "7,0,h,observation,concentration,0,mg/L\n7,5,h,dose,oral,320,mg\n",
            ["comes after the last observation"],
        ),
        (HEADER + "7,0,h,dose,oral,320,mg\n", ["no observations"]),
        (GOOD.replace("320,mg", "-320,mg"), ["line 2", "must be > 0"]),
    ],
)
def test_bad_data_give_clear_errors(write, text, fragments):
    path = write("bad.csv", text)
    with pytest.raises(PatientDataError) as err:
        Patient.from_csv(path)
    msg = str(err.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg


def test_several_subjects_need_a_choice():
    with pytest.raises(PatientDataError, match="holds 12 subjects"):
        Patient.from_csv(data_path("theophylline.csv"))
    with pytest.raises(PatientDataError, match="no rows for subject '13'"):
        Patient.from_csv(data_path("theophylline.csv"), subject=13)


def test_records_constructor_validates_too():
    p = Patient.from_records([(1.0, "concentration", 2.0, "mg/L")], [(0.0, "oral", 100.0, "mg")])
    assert p.routes == ["oral"]
    with pytest.raises(PatientDataError, match="negative time"):
        Patient.from_records([(-1.0, "concentration", 2.0, "mg/L")])
