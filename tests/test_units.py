import functools
import math

import numpy as np
import pytest

from twinbayes.inputs.units import UnitError, conversion_factor, parse_unit


@pytest.mark.parametrize(
    "src, dst, factor",
    [
        ("ug/mL", "mg/L", 1.0),
        ("ng/mL", "mg/L", 1e-3),
        ("min", "h", 1 / 60),
        ("d", "h", 24.0),
        ("g", "mg", 1e3),
        ("mg/dL", "mg/L", 10.0),
        ("1/min", "1/h", 60.0),
        ("mm3", "mL", 1e-3),
    ],
)
def test_conversions(src, dst, factor):
    assert math.isclose(conversion_factor(src, dst), factor, rel_tol=1e-12)


def test_dimension_mismatch_and_unknown_symbols():
    with pytest.raises(UnitError, match="dimensions differ"):
        conversion_factor("mg", "mg/L")
    with pytest.raises(UnitError, match="unknown unit symbol 'furlong'"):
        parse_unit("furlong/h")
    with pytest.raises(UnitError, match="empty"):
        parse_unit("")
    assert parse_unit("mg/g").dimensionless and parse_unit("1").dimensionless
    assert not parse_unit("mg/kg/h").dimensionless


# Hand-computed references.  Glucose C6H12O6: 6 x 12.011 + 12 x 1.008 + 6 x 15.999 = 180.156
# g/mol, so 1 mmol/L = 180.156 mg/L = 18.0156 mg/dL; creatinine C4H7N3O 113.12 g/mol, so
# 1 mg/dL = 10 mg/L / 113.12 g/mol = 88.40 umol/L (the clinical 88.4 factor).
@pytest.mark.parametrize(
    "value, src, dst, molar_mass, expected",
    [
        (5.5, "mmol/L", "mg/dL", 180.156, 99.0858),  # fasting glucose
        (100.0, "mg/dL", "mmol/L", 180.156, 5.550745),
        (1.0, "mg/dL", "umol/L", 113.12, 88.40169),  # creatinine
        (12.0, "ug/mL", "mg/L", None, 12.0),
        (12.0, "mg/L", "ug/mL", None, 12.0),
        (250.0, "mg", "mmol", 151.16, 1.653877),  # paracetamol dose by amount
        (120.0, "mm[Hg]", "kPa", None, 15.99869),  # 120 x 133.322387415 Pa
        (10.0, "cm[H2O]", "mmHg", None, 7.355592),  # 10 x 98.0665 / 133.322387415
        (4.5, "10*3/uL", "1/L", None, 4.5e9),  # leucocytes
        (15.0, "u[IU]/mL", "uU/mL", None, 15.0),
        (15.0, "m[IU]/L", "uU/mL", None, 15.0),
        (7.0, "[IU]/L", "mU/mL", None, 7.0),  # 1 IU/L = 1 mIU/mL
        (40.0, "%", "1", None, 0.4),
        (6.0, "mL.min-1", "L/h", None, 0.36),
        (3.0, "{cells}/uL", "1/mL", None, 3000.0),
        (2.0, "wk", "d", None, 14.0),
    ],
)
def test_conversions_against_hand_computed_values(value, src, dst, molar_mass, expected):
    assert math.isclose(value * conversion_factor(src, dst, molar_mass), expected, rel_tol=2e-6), (
        src,
        dst,
    )


def test_amount_and_mass_need_a_stated_molar_mass():
    with pytest.raises(UnitError, match="state its molar mass"):
        conversion_factor("mmol/L", "mg/dL")
    with pytest.raises(UnitError, match="positive number of g/mol"):
        conversion_factor("mmol/L", "mg/dL", molar_mass=-1.0)
    with pytest.raises(
        UnitError, match="dimensions differ"
    ):  # a molar mass does not make mmol/L a rate
        conversion_factor("mmol/L", "mg/h", molar_mass=180.156)
    # a molar mass is ignored where the dimensions already agree
    assert conversion_factor("mg/L", "ug/mL", molar_mass=180.156) == 1.0
    # round trip mass -> amount -> mass
    f = conversion_factor("mg/dL", "mmol/L", 180.156) * conversion_factor(
        "mmol/L", "mg/dL", 180.156
    )
    assert math.isclose(f, 1.0, rel_tol=1e-14)


@pytest.mark.parametrize(
    "bad", ["mg/L}", "mg/{x", "10*", "mcg.", "mm^x", "mg//L", "mg{<script>alert(1)</script>}/L"]
)
def test_malformed_ucum_strings_are_refused_clearly(bad):
    with pytest.raises(UnitError, match="malformed|unknown unit symbol|unbalanced"):
        parse_unit(bad)


# Independent reference: pint (a different registry and parser).  UCUM spellings are mapped to
# pint's names by hand here; the factors come from pint's own definitions.
_PINT = [
    ("mmol/L", "mg/dL", 180.156, "mmol/L", "mg/dL"),
    ("umol/L", "mg/dL", 113.12, "umol/L", "mg/dL"),
    ("ug/mL", "mg/L", None, "ug/mL", "mg/L"),
    ("ng/mL", "ug/L", None, "ng/mL", "ug/L"),
    ("mL/min", "L/h", None, "mL/min", "L/h"),
    ("L/h/kg", "mL/min/kg", None, "L/h/kg", "mL/min/kg"),
    ("mm[Hg]", "kPa", None, "mmHg", "kPa"),
    ("cm[H2O]", "kPa", None, "cmH2O", "kPa"),
    ("mm3", "mL", None, "mm**3", "mL"),
    ("d", "min", None, "day", "min"),
    ("wk", "h", None, "week", "hour"),
    ("mg", "umol", 151.16, "mg", "umol"),
    ("1/min", "1/h", None, "1/min", "1/h"),
]


@pytest.mark.parametrize("src, dst, molar_mass, psrc, pdst", _PINT)
def test_conversions_agree_with_pint(src, dst, molar_mass, psrc, pdst):
    ureg = _pint_registry()
    q = ureg.Quantity(1.0, psrc)
    if molar_mass is None:
        expected = q.to(pdst).magnitude
    else:
        expected = q.to(pdst, "chemistry", mw=molar_mass * ureg("g/mol")).magnitude
    assert math.isclose(conversion_factor(src, dst, molar_mass), expected, rel_tol=1e-6)


@functools.cache
def _pint_registry():
    import pint

    return pint.UnitRegistry()


def test_a_spec_with_a_molar_mass_reads_glucose_in_mmol_per_litre(tmp_path):
    """The IVGTT of Pacini & Bergman (1986) rewritten in mmol/L gives the same design in mg/dL."""
    from twinbayes import Patient, PatientDataError, load_spec
    from twinbayes.dynamics.design import design_for
    from twinbayes.inputs.library import spec_path

    mgdl = Patient.from_csv("bundled:ivgtt_pacini_bergman_1986.csv")
    rows = [
        (t, tu, ev, name, v / 18.0156, "mmol/L", d)  # by hand: 1 mmol/L = 18.0156 mg/dL
        if (ev, name) == ("observation", "glucose")
        else (t, tu, ev, name, v, u, d)
        for t, tu, ev, name, v, u, d in mgdl.rows()
    ]
    mmol = Patient.from_rows(rows, subject="x")
    spec = load_spec(spec_path("glucose_minimal"))
    assert spec.observations["glucose"].molar_mass == 180.156
    a, b = design_for(spec, mgdl), design_for(spec, mmol)
    np.testing.assert_allclose(b.values["glucose"], a.values["glucose"], rtol=1e-12)
    np.testing.assert_array_equal(b.times["glucose"], a.times["glucose"])

    text = spec_path("glucose_minimal").read_text().replace("molar_mass = 180.156", "")
    (tmp_path / "g.toml").write_text(text)
    with pytest.raises(PatientDataError, match="observation 'glucose'.*state its molar mass"):
        design_for(load_spec(tmp_path / "g.toml"), mmol)
