"""Physical units: parsing, dimension checks and conversion factors.

A deliberately small registry for the quantities twinbayes meets in physiology
data: mass, volume, amount of substance, time, length, pressure and
"international units" (insulin).  A unit string is a product of symbols with
optional integer powers, e.g. ``"mg/L"``, ``"1/h"``, ``"uU/mL"``, ``"mm3"``,
``"L/h/kg"``.  Unknown symbols raise :class:`UnitError` listing what is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["UnitError", "Unit", "parse_unit", "conversion_factor", "KNOWN_SYMBOLS"]


class UnitError(ValueError):
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
_PRESSURE = {"mmHg": 1.0, "kPa": 7.500616827}

_REGISTRY: dict[str, tuple[float, dict[str, int]]] = {}
for _table, _dims in [
    (_MASS, {"mass": 1}),
    (_VOLUME, {"length": 3}),
    (_LENGTH, {"length": 1}),
    (_TIME, {"time": 1}),
    (_AMOUNT, {"amount": 1}),
    (_INTL, {"intl_unit": 1}),
    (_PRESSURE, {"pressure": 1}),
]:
    for _sym, _f in _table.items():
        _REGISTRY[_sym] = (_f, _dims)

KNOWN_SYMBOLS = tuple(_REGISTRY)

_TERM = re.compile(r"^(?P<sym>[A-Za-zµ]+)(?:\^?(?P<pow>-?\d+))?$")


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
    factor = 1.0
    dims: dict[str, int] = {}
    # split into multiplicative (+1) and divisive (-1) terms
    for i, chunk in enumerate(s.split("/")):
        sign = 1 if i == 0 else -1
        for term in chunk.split("*"):
            if term == "":
                raise UnitError(f"malformed unit {text!r}: empty factor")
            if term == "1":
                continue
            m = _TERM.match(term)
            if not m or m.group("sym") not in _REGISTRY:
                sym = m.group("sym") if m else term
                raise UnitError(
                    f"unknown unit symbol {sym!r} in {text!r}; known symbols: {', '.join(KNOWN_SYMBOLS)}"
                )
            power = sign * int(m.group("pow") or 1)
            f, d = _REGISTRY[m.group("sym")]
            factor *= f**power
            for k, v in d.items():
                dims[k] = dims.get(k, 0) + v * power
    return Unit(text, factor, tuple(sorted((k, v) for k, v in dims.items() if v != 0)))


def conversion_factor(source: str, target: str) -> float:
    """Multiplier that converts a value in ``source`` units into ``target`` units.

    Examples
    --------
    >>> conversion_factor("ug/mL", "mg/L")
    1.0
    >>> conversion_factor("min", "h")  # doctest: +ELLIPSIS
    0.0166...
    """
    a, b = parse_unit(source), parse_unit(target)
    if a.dims != b.dims:
        raise UnitError(
            f"cannot convert {source!r} to {target!r}: dimensions differ ({a.dims} vs {b.dims})"
        )
    return a.factor / b.factor
