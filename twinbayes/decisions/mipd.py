"""Model-informed precision dosing: exposure targets, the dose that reaches them, forecast errors.

With a linear (first-order elimination) model the area under the concentration curve over one
day at steady state depends on clearance alone,

.. math::

    AUC_{24,ss} = \\frac{D_{24}}{CL},

whatever the number of compartments, infusion length or dosing interval (Rowland & Tozer 2011,
ch. 11; the basis of AUC-guided vancomycin dosing, Rybak et al. 2020).  Posterior draws of
``CL`` under each twin, or the draws of a weighted mixture of twins, therefore give the
probability that a daily dose reaches a target window, and the dose that makes it most likely.

Forecast accuracy follows Sheiner & Beal (1981): the bias is the mean prediction error and the
imprecision its root mean square, here relative to the true value.

References
----------
Rowland M, Tozer TN (2011). Clinical Pharmacokinetics and Pharmacodynamics, 4th ed.
Rybak MJ et al. (2020). Therapeutic monitoring of vancomycin for serious MRSA infections: a revised
consensus guideline. Am J Health Syst Pharm 77:835-864 (target AUC24 400-600 mg h/L).
Sheiner LB, Beal SL (1981). Some suggestions for measuring predictive performance.
J Pharmacokinet Biopharm 9:503-512.
Uster DW, Stocker SL, Carland JE, et al. (2021). A model averaging/selection approach improves the
predictive performance of model-informed precision dosing. Clin Pharmacol Ther 109:175-183.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = [
    "steady_state_auc24",
    "target_attainment",
    "DoseRecommendation",
    "recommend_dose",
    "mixture",
    "prediction_errors",
]


def steady_state_auc24(clearance: np.ndarray, daily_dose: float | np.ndarray) -> np.ndarray:
    """``AUC24,ss = D24 / CL`` for every clearance draw (dose in mg, CL in L/h: mg h/L).

    Parameters
    ----------
    clearance : array
        Draws of the clearance.
    daily_dose : float or array
        Total dose per 24 h; an array gives one row per dose.

    Returns
    -------
    ndarray
        ``(draws,)``, or ``(doses, draws)`` for an array of doses.
    """
    cl = np.asarray(clearance, float)
    if np.any(cl <= 0):
        raise ValueError("clearance draws must be > 0")
    dose = np.asarray(daily_dose, float)
    return dose[..., None] / cl if dose.ndim else dose / cl


def target_attainment(
    clearance: np.ndarray, daily_doses: np.ndarray, lower: float, upper: float
) -> np.ndarray:
    """Probability that ``AUC24,ss`` lies in ``[lower, upper]``, for each daily dose."""
    auc = steady_state_auc24(clearance, np.atleast_1d(np.asarray(daily_doses, float)))
    return ((auc >= lower) & (auc <= upper)).mean(axis=-1)


class DoseRecommendation(NamedTuple):
    """The daily dose most likely to reach the target window, and the probabilities of all doses.

    Attributes
    ----------
    daily_dose : float
        The recommended dose per 24 h.
    probability : float
        Its probability of reaching the target.
    candidates : ndarray
        The daily doses considered.
    probabilities : ndarray
        The probability of each candidate.
    """

    daily_dose: float
    probability: float
    candidates: np.ndarray
    probabilities: np.ndarray


def recommend_dose(
    clearance: np.ndarray, candidates: np.ndarray, lower: float, upper: float
) -> DoseRecommendation:
    """The candidate daily dose with the highest probability of ``lower <= AUC24,ss <= upper``.

    Ties go to the smallest such dose.
    """
    candidates = np.sort(np.asarray(candidates, float))
    p = target_attainment(clearance, candidates, lower, upper)
    best = int(np.argmax(p))
    return DoseRecommendation(float(candidates[best]), float(p[best]), candidates, p)


def mixture(
    draws: Mapping[str, np.ndarray], weights: Mapping[str, float], n: int, seed: int = 0
) -> np.ndarray:
    """``n`` draws from the weighted mixture of each twin's draws (multinomial shares).

    Parameters
    ----------
    draws : mapping twin name -> array
        Draws along the first axis (e.g. clearance ``(S,)`` or a trajectory ``(S, times)``).
    weights : mapping twin name -> weight
        Non-negative, summing to 1; twins without weight contribute nothing.
    n : int
    seed : int

    Returns
    -------
    ndarray
        ``(n, ...)``, rows from twin ``k`` in proportion ``w_k``, in random order.
    """
    names = list(draws)
    w = np.array([float(weights.get(k, 0.0)) for k in names])
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"weights must be >= 0 and sum to 1, got {dict(zip(names, w))}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, w / w.sum())
    parts = []
    for k, c in zip(names, counts):
        if c:
            d = np.asarray(draws[k], float)
            parts.append(d[rng.integers(0, len(d), size=c)])
    return rng.permutation(np.concatenate(parts))


def prediction_errors(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Relative bias and imprecision of point predictions (Sheiner & Beal 1981).

    .. math::

        \\text{bias} = \\frac{100}{n} \\sum_i \\frac{\\hat y_i - y_i}{y_i}, \\qquad
        \\text{imprecision} = 100 \\sqrt{\\frac{1}{n} \\sum_i \\left(\\frac{\\hat y_i - y_i}{y_i}\\right)^2}

    Returns
    -------
    dict
        ``bias_pct``, ``imprecision_pct`` (relative RMSE), ``within_20_pct`` (share of
        predictions within 20 % of the truth, in %) and ``n``; the standard error of the bias
        as ``bias_se_pct``.
    """
    pred, true = np.asarray(predicted, float), np.asarray(true, float)
    if pred.shape != true.shape or np.any(true <= 0):
        raise ValueError("predicted and true need the same shape, and true values > 0")
    rel = (pred - true) / true
    n = rel.size
    return {
        "bias_pct": float(100 * rel.mean()),
        "bias_se_pct": float(100 * rel.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "imprecision_pct": float(100 * np.sqrt(np.mean(rel**2))),
        "within_20_pct": float(100 * np.mean(np.abs(rel) <= 0.2)),
        "n": n,
    }
