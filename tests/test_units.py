import math

import pytest

from twinbayes.units import UnitError, conversion_factor, parse_unit


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
