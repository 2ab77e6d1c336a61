"""Forward honesty: widen a twin's predictions past the last level by how wrong it forecast so far.

A twin's posterior predictive says how uncertain the twin is *if it is the right model*.  When
no twin is (the usual case for a real patient: a clearance that drifts, a distribution phase
the twin lacks), its forecasts miss by more than it expects, and by more the further ahead
they reach.  The patient's own series measures this: leave-future-out refits
(:func:`~twinbayes.comparison.lfo.lfo`, Bürkner, Gabry & Vehtari 2020) forecast each level
from the levels before it, and each later level from every origin.  On the log scale
(:func:`~twinbayes.comparison.lfo.log_forecast_error`), the error of the forecast of a level
``h_k`` time units after the last level fitted is modelled as

.. math::

    e \\sim \\mathcal N(0,\\; C + \\tau^2 B), \\quad B_{ij} = \\min(h_i, h_j),

per forecast origin, ``C`` the forecasts' own log covariance and :math:`\\tau^2 B` a *model
discrepancy* (Kennedy & O'Hagan 2001) that grows like a random walk with the time forecast
ahead: the simplest discrepancy process that is zero at the data and widens with the horizon.
:math:`\\tau^2 \\ge 0` is estimated by maximum composite likelihood from the patient's
forecasts (:func:`fit_rate`).  A discrepancy must earn its place: the twin is widened only where
the likelihood ratio of :math:`\\hat\\tau^2` against :math:`\\tau^2 = 0` exceeds the 50:50
mixture of :math:`\\chi^2_0` and :math:`\\chi^2_1` at ``level`` (the null on the boundary of the
parameter space, Self & Liang 1987; :func:`likelihood_ratio`); a twin whose forecasts were as
good as it claimed, or not clearly worse, is left as it is.  With few, overlapping forecasts the
composite likelihood ratio is not exactly so distributed; the rate at which a twin that *is* the
truth gets widened is measured in ``benchmarks/bench_calibration.py`` and stated in the docs.

Predictions after the last level ``t_L`` are widened by a multiplicative Brownian path
(one per posterior draw),

.. math::

    \\tilde y_s(t) = y_s(t)\\,\\exp\\{\\tau\\, W_s(t - t_L)\\}, \\quad t > t_L,

so every quantity of interest computed from the trajectory (a trough, an AUC, a time above a
level) is widened consistently, and a quantity read ``H`` past the last level gets log-scale
variance :math:`\\tau^2 H` on top of the twin's own.  The random walk extrapolates the
discrepancy from the horizons the patient's levels checked (at most ``longest``) to the
decision's; the ratio of the two is reported as the decision's horizon in what the levels can
check.  This is a recalibration from few errors (2-5 with 5-8 levels): it does not correct a
twin's bias, it makes its predictions as uncertain as its record on this patient says.

References
----------
Kennedy MC, O'Hagan A (2001). Bayesian calibration of computer models. J R Stat Soc B
63(3):425-464.
Bürkner P-C, Gabry J, Vehtari A (2020). Approximate leave-future-out cross-validation for
Bayesian time series models. J Stat Comput Simul 90(14):2499-2523.
Varin C, Reid N, Firth D (2011). An overview of composite likelihood methods. Stat Sin
21(1):5-42.
Self SG, Liang K-Y (1987). Asymptotic properties of maximum likelihood estimators and likelihood
ratio tests under nonstandard conditions. J Am Stat Assoc 82(398):605-610.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.optimize import minimize_scalar
from scipy.stats import chi2

from ..comparison.cv import REFIT_SETTINGS
from ..comparison.lfo import lfo, time_points

__all__ = [
    "Discrepancy",
    "FORWARD_MIN_POINTS",
    "WIDEN_LEVEL",
    "fit_rate",
    "likelihood_ratio",
    "widening_threshold",
    "discrepancy_of",
    "forward_discrepancy",
]

log = logging.getLogger(__name__)

FORWARD_MIN_POINTS = 3
"""Levels the first forecast is made from (one per parameter of a one-compartment twin)."""

WIDEN_LEVEL = 0.05
"""Nominal level of the test that a twin's forecasts missed by more than it said
(:func:`widening_threshold`): a twin is widened only where its forecasts reject it."""


class Discrepancy(NamedTuple):
    """A twin's forward discrepancy, fitted to its leave-future-out forecasts of this patient.

    Attributes
    ----------
    twin : str
    rate : float
        Log-scale variance added per time unit past the last level: :math:`\\hat\\tau^2` where
        the test rejects :math:`\\tau^2 = 0`, else 0 (NaN: not estimable, no forecast of a
        positive level).
    since : float
        Time of the last level (``t_L``).
    horizons, errors : numpy.ndarray
        Per forecast: time ahead ``h`` and log error ``e``.
    origins : numpy.ndarray
        Per forecast: the index of the origin it was made from.
    fitted : float
        :math:`\\hat\\tau^2` itself, whether or not applied (NaN: not estimable).
    lr : float
        Its likelihood ratio against :math:`\\tau^2 = 0` (:func:`likelihood_ratio`).
    """

    twin: str
    rate: float
    since: float
    horizons: np.ndarray
    errors: np.ndarray
    origins: np.ndarray
    fitted: float = np.nan
    lr: float = np.nan

    @property
    def estimable(self) -> bool:
        return bool(np.isfinite(self.rate))

    @property
    def longest(self) -> float:
        """The longest time ahead any forecast of this patient's levels was checked (0: none)."""
        return float(self.horizons.max()) if len(self.horizons) else 0.0

    def sd_at(self, t: np.ndarray | float) -> np.ndarray:
        """Log-scale SD the discrepancy adds at time ``t`` (0 up to the last level)."""
        rate = self.rate if self.estimable else 0.0
        return np.sqrt(rate * np.maximum(np.asarray(t, float) - self.since, 0.0))

    def widen(self, grid: np.ndarray, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``means`` ``(draw, time)`` on ``grid`` times a multiplicative Brownian path after ``since``."""
        grid = np.asarray(grid, float)
        if not self.estimable or self.rate == 0.0 or not np.any(grid > self.since):
            return means
        ahead = np.maximum(grid - self.since, 0.0)
        steps = np.diff(ahead, prepend=0.0)  # 0 up to the last level, then the grid's spacing
        walk = np.cumsum(rng.standard_normal(means.shape) * np.sqrt(steps), axis=1)
        return means * np.exp(np.sqrt(self.rate) * walk)

    def as_attrs(self) -> dict:
        """What a results file records: the rate, the last level, the forecasts it rests on."""
        return {
            "rate": float(self.rate) if self.estimable else None,
            "fitted": float(self.fitted) if np.isfinite(self.fitted) else None,
            "lr": float(self.lr) if np.isfinite(self.lr) else None,
            "since": float(self.since),
            "longest_checked": self.longest,
            "horizons": [float(h) for h in self.horizons],
            "errors": [float(e) for e in self.errors],
            "origins": [int(o) for o in self.origins],
        }


def _blocks(errors, cov, horizons, origins) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per origin: errors, forecast covariance and the Brownian covariance ``min(h_i, h_j)``."""
    out = []
    for o in np.unique(origins):
        at = np.flatnonzero(origins == o)
        h = horizons[at]
        out.append((errors[at], _nonnegative(cov[np.ix_(at, at)]), np.minimum.outer(h, h)))
    return out


def _nonnegative(cov: np.ndarray) -> np.ndarray:
    """``cov`` with negative eigenvalues (moment matching, rounding) raised to a small floor."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    floor = 1e-9 * max(float(np.max(np.abs(values))), 1e-12)
    return (vectors * np.maximum(values, floor)) @ vectors.T


def _minus_loglik(tau2: float, blocks) -> float:
    """Minus the composite Gaussian log likelihood of the errors, origin by origin."""
    total = 0.0
    for e, c, b in blocks:
        sigma = c + tau2 * b
        try:
            chol = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            return np.inf
        z = np.linalg.solve(chol, e)
        total += np.sum(np.log(np.diag(chol))) + 0.5 * z @ z
    return float(total)


def _usable_blocks(errors, cov, horizons, origins):
    """:func:`_blocks` of the usable forecasts (finite error and covariance, ``h > 0``); None if none."""
    errors, horizons, origins = (np.asarray(a, float) for a in (errors, horizons, origins))
    cov = np.asarray(cov, float)
    ok = np.isfinite(errors) & (horizons > 0) & np.all(np.isfinite(cov), axis=0)
    if not ok.any():
        return None, np.nan
    at = np.flatnonzero(ok)
    upper = float(np.max(errors[at] ** 2) / np.min(horizons[at])) + 1e-12
    return _blocks(errors[at], cov[np.ix_(at, at)], horizons[at], origins[at]), upper


def _maximise(blocks, upper: float) -> float:
    """Arg-min of :func:`_minus_loglik` over ``[0, upper]``: a grid of the square root, refined."""
    grid = (np.linspace(0.0, 1.0, 41) ** 2) * upper
    values = [_minus_loglik(t, blocks) for t in grid]
    i = int(np.argmin(values))
    if i == 0 and values[0] <= values[1]:
        lo, hi = 0.0, grid[1]
    else:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(_minus_loglik, bounds=(lo, hi), args=(blocks,), method="bounded")
    if not np.isfinite(values[0]) or best.fun < values[0]:
        return float(best.x) if best.fun <= values[i] else float(grid[i])
    return 0.0


def fit_rate(
    errors: np.ndarray, cov: np.ndarray, horizons: np.ndarray, origins: np.ndarray
) -> float:
    """Maximum composite-likelihood :math:`\\tau^2 \\ge 0` of the forecast errors.

    The errors of the forecasts from one origin are jointly Gaussian,
    :math:`e \\sim N(0, C + \\tau^2 B)`, ``C`` the forecasts' own log covariance (shared
    parameters make forecasts from one origin correlated) and :math:`B_{ij} = \\min(h_i, h_j)`
    the covariance of a random walk's values ``h_i`` and ``h_j`` ahead: errors of one sign that
    grow with the horizon are what a random-walk discrepancy explains and a twin's own
    uncertainty does not.  Origins are combined as if independent (a composite likelihood,
    Varin, Reid & Firth 2011).  Maximised over :math:`[0, \\tau^2_{max}]` on a grid of the
    square root and refined (bounded Brent); ``tau2_max`` makes the largest error a 1-SD event
    at the shortest horizon.  NaN when no forecast is usable; 0 when the errors are no larger
    than the forecasts said.
    """
    blocks, upper = _usable_blocks(errors, cov, horizons, origins)
    return np.nan if blocks is None else _maximise(blocks, upper)


def likelihood_ratio(
    errors: np.ndarray, cov: np.ndarray, horizons: np.ndarray, origins: np.ndarray, rate: float
) -> float:
    """The composite likelihood ratio statistic of ``rate`` against no discrepancy,

    .. math:: \\Lambda = 2\\,\\{\\ell(\\hat\\tau^2) - \\ell(0)\\},

    ``\\ell`` the log likelihood of :func:`fit_rate`.  NaN where no forecast is usable."""
    blocks, _ = _usable_blocks(errors, cov, horizons, origins)
    return _ratio(blocks, rate)


def _ratio(blocks, rate: float) -> float:
    """:func:`likelihood_ratio` of the usable forecasts' ``blocks`` (None: NaN)."""
    if blocks is None or not np.isfinite(rate):
        return np.nan
    return max(2.0 * (_minus_loglik(0.0, blocks) - _minus_loglik(rate, blocks)), 0.0)


def widening_threshold(level: float = WIDEN_LEVEL) -> float:
    """The critical value of :math:`\\Lambda` at ``level``: the upper ``level`` point of the
    50:50 mixture of :math:`\\chi^2_0` and :math:`\\chi^2_1` (Self & Liang 1987), i.e. the
    upper ``2 level`` point of :math:`\\chi^2_1`; 0 at ``level >= 0.5`` (every positive
    :math:`\\hat\\tau^2` applied)."""
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must lie in (0, 1], got {level!r}")
    return 0.0 if level >= 0.5 else float(chi2.isf(2.0 * level, 1))


def discrepancy_of(
    name: str, forecasts: xr.Dataset, since: float, level: float = WIDEN_LEVEL
) -> Discrepancy:
    """The discrepancy fitted to a twin's :func:`~twinbayes.comparison.lfo.lfo` result: every
    forecast of a later level from every origin; applied where its likelihood ratio exceeds
    :func:`widening_threshold` at ``level``."""
    horizons = forecasts["forecast_ahead"].values
    errors = forecasts["forecast_error"].values
    origins = forecasts["forecast_origin_index"].values
    blocks, upper = _usable_blocks(errors, forecasts["forecast_cov"].values, horizons, origins)
    fitted = np.nan if blocks is None else _maximise(blocks, upper)  # fit_rate, blocks made once
    lr = _ratio(blocks, fitted)
    rate = fitted if not np.isfinite(lr) or lr > widening_threshold(level) else 0.0
    return Discrepancy(name, rate, float(since), horizons, errors, origins, fitted, lr)


def forward_discrepancy(
    twin, *, min_points: int = FORWARD_MIN_POINTS, seed: int = 0, level: float = WIDEN_LEVEL
) -> Discrepancy:
    """Fit ``twin``'s forward discrepancy from leave-future-out forecasts of its own levels.

    Forecasts of every later level from every origin of ``min_points`` levels or more
    (PSIS-LFO, refits where Pareto k > 0.7, refits with :data:`REFIT_SETTINGS`).  With fewer
    than ``min_points + 1`` observation times there is no forecast: the rate is NaN (not
    estimable) and nothing is widened; so too where the forecasts fail (a refit that cannot be
    made, a singular covariance), with a logged warning: widening never takes a run down.
    """
    points, _ = time_points(twin.design)
    since = float(points.max()) if len(points) else 0.0
    if len(points) < min_points + 1:
        empty = np.zeros(0)
        return Discrepancy(twin.name, np.nan, since, empty, empty, empty.astype(int))
    try:  # widening is a safeguard: a forecast that cannot be made or fitted leaves it off
        forecasts = lfo(twin, min_points=min_points, horizon=1, seed=seed, **REFIT_SETTINGS)
        return discrepancy_of(twin.name, forecasts, since, level)
    except (ValueError, FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
        log.warning("%s: forward widening not estimable (%s)", twin.name, exc)
        empty = np.zeros(0)
        return Discrepancy(twin.name, np.nan, since, empty, empty, empty.astype(int))
