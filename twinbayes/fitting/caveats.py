"""Warnings that travel: one vocabulary, one place that makes them.

A twin can pass its convergence gate and still be a poor account of the patient: its residuals
drift or run in long stretches (:mod:`twinbayes.fitting.misfit`), or its prior contradicts the data
(:mod:`twinbayes.fitting.sensitivity`).  Every such finding becomes one line here, beginning with its
kind, and the same lines reach the console summary, ``summary.json`` (``warnings`` of each twin),
the twin's NetCDF file (attribute ``warnings``) and the report's answer box.

Kinds: ``misfit`` (a posterior predictive check below its alpha), ``prior-data conflict``.
"""

from __future__ import annotations

__all__ = ["KINDS", "twin_warnings"]

KINDS = ("misfit", "prior-data conflict")


def twin_warnings(twin) -> list[str]:
    """Every warning about one fitted twin, each line starting with its kind."""
    from .misfit import predictive_checks

    lines = [c.warning() for c in predictive_checks(twin) if c.misfit]
    sensitivity = getattr(twin, "sensitivity", None)
    if sensitivity is not None:
        lines += [
            f"prior-data conflict: the prior of {name} disagrees with this patient's data"
            for name in sensitivity.conflicts
        ]
    return lines
