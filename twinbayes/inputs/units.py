"""Physical units: parsing, dimension checks and conversion factors.

A deliberately small registry for the quantities twinbayes meets in physiology
data: mass, volume, amount of substance, time, length, pressure and
"international units" (insulin).  A unit string is a product of symbols with
optional integer powers, e.g. ``"mg/L"``, ``"1/h"``, ``"uU/mL"``, ``"mm3"``,
``"L/h/kg"``, in the case-sensitive UCUM syntax FHIR uses (``"mm[Hg]"``,
``"u[IU]/mL"``, ``"mL.min-1"``, ``"10*3/uL"``, ``"%"``, annotations such as
``"{cells}"`` read as 1) plus the common clinical spellings ``mcg``, ``hr`` and
``mmHg``.  Unknown symbols raise :class:`UnitError` listing what is known.

Amount of substance and mass convert into each other only with a stated molar
mass (``molar_mass``, g/mol): glucose 180.156 g/mol, so 5.5 mmol/L x 180.156
g/mol = 990.9 mg/L = 99.09 mg/dL.

``U`` is read as the international unit (insulin ``uU/mL`` is ``u[IU]/mL`` in
UCUM), not as UCUM's enzyme unit (umol/min), which physiology data here do not use.

Why not a library: ``ucumvert`` 0.3.2 (UCUM on top of ``pint``) fails to load with
``pint`` 0.26 and, with ``pint`` 0.24, takes 2.9 s to build its registry and reads
``mm[Hg]`` as mass/length^2 (measured 2026-11-27); ``pint`` alone does not parse UCUM.
The tests check every conversion here against ``pint`` as an independent reference.

References
----------
G. Schadow, C. J. McDonald. The Unified Code for Units of Measure (UCUM), version 2.1,
Regenstrief Institute, https://ucum.org/ucum (sections 2-4: syntax, prefixes, units).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from ..error import TwinbayesError

__all__ = ["UnitError", "Unit", "parse_unit", "conversion_factor", "KNOWN_SYMBOLS"]


class UnitError(TwinbayesError, ValueError):
    """A unit string could not be parsed or two units do not match."""


# symbol -> (factor to base units, {dimension: power}); base: g, m, s, mol, U, mmHg
_MASS = {
    "kg": 1e3,
    "g": 1.0,
    "mg": 1e-3,
    "ug": 1e-6,
    "mcg": 1e-6,
    "µg": 1e-6,
    "ng": 1e-9,
    "pg": 1e-12,
}
_VOLUME = {"L": 1e-3, "dL": 1e-4, "mL": 1e-6, "uL": 1e-9, "µL": 1e-9}  # in m^3
# UCUM reads the litre as "l" or "L" (https://ucum.org/ucum, section 4.2.2: "l" and "L" are the same unit)
_VOLUME |= {k[:-1] + "l": v for k, v in _VOLUME.items()}
_LENGTH = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6}
_TIME = {
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "week": 604800.0,
}
_AMOUNT = {"mol": 1.0, "mmol": 1e-3, "umol": 1e-6, "µmol": 1e-6, "nmol": 1e-9, "pmol": 1e-12}
_INTL = {"U": 1.0, "mU": 1e-3, "uU": 1e-6, "µU": 1e-6}
_INTL |= {k[:-1] + b: v for k, v in _INTL.items() for b in ("[IU]", "[iU]")}
# 1 mmHg = 133.322387415 Pa (conventional; UCUM's m[Hg] = 133.3220 kPa agrees to 3e-6);
# 1 cmH2O = 98.0665 Pa (UCUM m[H2O] with 1 g/cm3).
_PRESSURE = {
    "mmHg": 1.0,
    "mm[Hg]": 1.0,
    "kPa": 1000.0 / 133.322387415,
    "Pa": 1.0 / 133.322387415,
    "cm[H2O]": 98.0665 / 133.322387415,
}
_TIME |= {"wk": 604800.0, "mo": 2629800.0, "a": 31557600.0}  # UCUM: mean Julian month and year
_DIMENSIONLESS = {"%": 1e-2}

_REGISTRY: dict[str, tuple[float, dict[str, int]]] = {}
for _table, _dims in [
    (_MASS, {"mass": 1}),
    (_VOLUME, {"length": 3}),
    (_LENGTH, {"length": 1}),
    (_TIME, {"time": 1}),
    (_AMOUNT, {"amount": 1}),
    (_INTL, {"intl_unit": 1}),
    (_PRESSURE, {"pressure": 1}),
    (_DIMENSIONLESS, {}),
]:
    for _sym, _f in _table.items():
        _REGISTRY[_sym] = (_f, _dims)

KNOWN_SYMBOLS = tuple(_REGISTRY)

_TERM = re.compile(
    r"(?P<sym>[A-Za-zµ%]+(?:\[[A-Za-z0-9]+\])?|\[[A-Za-z0-9]+\])(?:\^?(?P<pow>[-+]?\d+))?"
)
MAX_POWER = 12
"""Largest power of a unit symbol (``m3``, ``s-2``): units as measured, not arithmetic."""
_TEN_POWER = re.compile(r"10[*^](?P<pow>[-+]?\d+)")
# UCUM annotations ({cells}, {glucose}): read as 1; their text is kept to a plain character set,
# since unit strings from patient files reach scenario names, tables and the report
_ANNOTATION = re.compile(r"\{[A-Za-z0-9 ._%:#+-]*\}")
_ALONE_ANNOTATION = re.compile(r"(^|[./*])\{[A-Za-z0-9 ._%:#+-]*\}")


@dataclass(frozen=True)
class Unit:
    """A parsed unit: the original text, a factor to base units and dimensions."""

    text: str
    factor: float
    dims: tuple[tuple[str, int], ...]

    @property
    def dimensionless(self) -> bool:
        return not self.dims


def parse_unit(text: str) -> Unit:
    """Parse a unit string such as ``"mg/L"`` or ``"1/h"`` (cached: units repeat on every row).

    Raises
    ------
    UnitError
        For anything but a known unit string.
    """
    if not isinstance(text, str):
        raise UnitError(f"a unit must be text, got {type(text).__name__}")
    return _parse_unit(text)


@lru_cache(maxsize=4096)
def _parse_unit(text: str) -> Unit:
    """Parse a unit string such as ``"mg/L"`` or ``"1/h"``.

    Raises
    ------
    UnitError
        If the string is empty or holds an unknown symbol.
    """
    if not isinstance(text, str) or not text.strip():
        raise UnitError(f"empty unit {text!r}; write e.g. 'mg/L', 'h' or '1' for dimensionless")
    s = text.strip().replace(" ", "").replace("·", "*")
    s = _ANNOTATION.sub("", _ALONE_ANNOTATION.sub(r"\g<1>1", s))  # "{cells}/uL" = "1/uL"
    if "{" in s or "}" in s:
        raise UnitError(
            f"malformed unit {text!r}: unbalanced braces, or an annotation {{...}} with characters "
            "other than letters, digits, space and . _ % : # + -"
        )
    factor = 1.0
    dims: dict[str, int] = {}
    # split into multiplicative (+1) and divisive (-1) terms; UCUM writes "." for "*"
    for i, chunk in enumerate(s.split("/")):
        sign = 1 if i == 0 else -1
        for term in re.split(r"(?<!10)\*|\.", chunk):
            f, d, power = _term(term, text)
            try:
                factor *= f ** (sign * power)
            except (OverflowError, ZeroDivisionError):
                factor = math.inf
            for k, v in d.items():
                dims[k] = dims.get(k, 0) + v * sign * power
    if not (math.isfinite(factor) and factor > 0) or any(abs(v) > MAX_POWER for v in dims.values()):
        raise UnitError(
            f"unit {text!r} is out of range (a factor of {factor:g}, or a power above "
            f"{MAX_POWER}); write the unit as measured, e.g. 'mg/L'"
        )
    return Unit(text, factor, tuple(sorted((k, v) for k, v in dims.items() if v != 0)))


def _term(term: str, text: str) -> tuple[float, dict[str, int], int]:
    """Factor, dimensions and power of one factor of a unit (``mg``, ``min-1``, ``10*3``, ``1``)."""
    if term == "":
        raise UnitError(f"malformed unit {text!r}: empty factor")
    if term == "1":
        return 1.0, {}, 1
    if m := _TEN_POWER.fullmatch(term):
        power = m.group("pow")
        if len(power.lstrip("+-")) > 3 or abs(int(power)) > 300:
            raise UnitError(
                f"malformed unit {text!r}: 10*{power} is out of range (10*-300 to 10*300)"
            )
        return 10.0 ** int(power), {}, 1
    m = _TERM.fullmatch(term)
    if not m or m.group("sym") not in _REGISTRY:
        sym = m.group("sym") if m else term
        raise UnitError(
            f"unknown unit symbol {sym!r} in {text!r}; known symbols: {', '.join(KNOWN_SYMBOLS)}"
        )
    f, d = _REGISTRY[m.group("sym")]
    power = m.group("pow") or "1"
    if len(power.lstrip("+-")) > 2 or abs(int(power)) > MAX_POWER:
        raise UnitError(f"malformed unit {text!r}: the power {power} is above {MAX_POWER}")
    return f, d, int(power)


def conversion_factor(source: str, target: str, molar_mass: float | None = None) -> float:
    """Multiplier that converts a value in ``source`` units into ``target`` units.

    Parameters
    ----------
    source, target : str
        Unit strings (see the module docstring).
    molar_mass : float, optional
        Molar mass of the substance in g/mol.  Needed, and used, only when one unit counts
        the substance by amount (mol) and the other by mass (g):
        :math:`x_\\mathrm{mass} = x_\\mathrm{amount} \\cdot M`, to the power of the
        difference in amount dimensions.

    Raises
    ------
    UnitError
        When the dimensions differ (beyond amount vs mass with a molar mass).

    Examples
    --------
    >>> conversion_factor("ug/mL", "mg/L")
    1.0
    >>> conversion_factor("min", "h")  # doctest: +ELLIPSIS
    0.0166...
    >>> round(5.5 * conversion_factor("mmol/L", "mg/dL", molar_mass=180.156), 2)  # glucose
    99.09
    """
    a, b = parse_unit(source), parse_unit(target)
    if a.dims == b.dims:
        return a.factor / b.factor
    da, db = dict(a.dims), dict(b.dims)
    moles = da.pop("amount", 0) - db.pop("amount", 0)  # mol in source per mol in target
    grams = da.pop("mass", 0) - db.pop("mass", 0)
    if moles and moles + grams == 0 and da == db:
        if molar_mass is None:
            raise UnitError(
                f"cannot convert {source!r} to {target!r}: one counts the substance by amount (mol), "
                "the other by mass (g); state its molar mass (molar_mass, in g/mol: e.g. 180.156 "
                "for glucose)"
            )
        if not (isinstance(molar_mass, (int, float)) and molar_mass > 0 and molar_mass < 1e7):
            raise UnitError(f"molar mass must be a positive number of g/mol, got {molar_mass!r}")
        return a.factor / b.factor * float(molar_mass) ** moles
    raise UnitError(
        f"cannot convert {source!r} to {target!r}: dimensions differ ({a.dims} vs {b.dims})"
    )
