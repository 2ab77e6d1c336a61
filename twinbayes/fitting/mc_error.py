"""How an estimate and its Monte Carlo standard error are written, in every output.

One rule for an MCSE that cannot be estimated: it is written as the words
:data:`NOT_ESTIMABLE`, never as a number that looks like a precision.  An MCSE
cannot be estimated when it is not finite, when it is at least half the range the
quantity can take (``0.000 +- 0.914`` for a share in [0, 1] says nothing), or when
it is exactly 0 at the edge of that range (every draw agreed: ``1.000 +- 0.000``
is a statement about the draws, not a probability known to be 1; the error of a
proportion of ``S`` draws that all agree is only bounded, by about ``3 / S``).
"""

from __future__ import annotations

import math

__all__ = ["NOT_ESTIMABLE", "SHORT", "mcse_estimable", "format_mcse", "format_estimate"]

NOT_ESTIMABLE = "MCSE not estimable"
"""The words written where an MCSE cannot be estimated (console, report, text files)."""
SHORT = "n/e"
"""The same in a narrow table column or figure cell, with :data:`NOT_ESTIMABLE` in a footnote."""


def mcse_estimable(value: float, mcse: float, bounds: tuple[float, float] | None = None) -> bool:
    """Whether ``mcse`` is a usable Monte Carlo SE of ``value`` (see the module's rule).

    ``bounds`` is the range the quantity can take (``(0, 1)`` for probabilities and shares;
    ``None`` for an unbounded one such as an elpd).
    """
    if not math.isfinite(mcse) or mcse < 0:
        return False
    if bounds is None:
        return True
    lo, hi = bounds
    if mcse >= (hi - lo) / 2:
        return False
    return not (mcse == 0 and value in (lo, hi))


def format_mcse(
    mcse: float,
    digits: int = 3,
    value: float = 0.0,
    bounds: tuple[float, float] | None = None,
    words: str = NOT_ESTIMABLE,
) -> str:
    """``mcse`` with ``digits`` decimals, or ``words`` (:data:`NOT_ESTIMABLE`, or :data:`SHORT`)."""
    return f"{mcse:.{digits}f}" if mcse_estimable(value, mcse, bounds) else words


def format_estimate(
    value: float,
    mcse: float,
    digits: int = 3,
    bounds: tuple[float, float] | None = None,
    pm: str = "+-",
    words: str = NOT_ESTIMABLE,
) -> str:
    """``"value +- mcse"``, ``"value (MCSE not estimable)"`` (``words``), or ``"n/a"`` where
    ``value`` is undefined."""
    if not math.isfinite(value):
        return "n/a"
    if mcse_estimable(value, mcse, bounds):
        return f"{value:.{digits}f} {pm} {mcse:.{digits}f}"
    return f"{value:.{digits}f} ({words})"
