"""Twins as a series accrues: weights and disagreement after each new time point.

:func:`over_time` replays a patient's series: for every number of time points
``L`` seen so far it refits each twin to those points (the twin's compiled model,
future observations weighted 0), weighs the twins by stacking their PSIS-LOO
densities *of the data so far* and, separately, by stacking their one-step
forecast densities *of the origins so far* (leave-future-out), and measures how
much the twins disagree about the next point (the between-twin share of the
predictive variance, as in :mod:`twinbayes.decisions.twin_disagreement`).  The forecast
densities are exact LFO terms: ``lpd_next`` at origin ``L`` is the exact LFO
``elpd_i`` of :func:`~twinbayes.comparison.lfo` with the same seed.

References
----------
Bürkner P-C, Gabry J, Vehtari A (2020). Approximate leave-future-out cross-validation
for Bayesian time series models. J Stat Comput Simul 90(14):2499-2523.
Yao Y, Vehtari A, Simpson D, Gelman A (2018). Using stacking to average Bayesian
predictive distributions. Bayesian Analysis 13(3):917-1007.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy.special import logsumexp

from ..fitting.twin import Refitter, Twin
from ..model.twin_model import TwinModel
from .lfo import time_points
from .mixture_variance import between_share
from .weights import pseudo_bma_plus_weights, stacking_weights

__all__ = ["over_time"]


def over_time(
    twins: Sequence[Twin], *, min_points: int = 3, seed: int = 0, **refit_kwargs
) -> xr.Dataset:
    """Weights, fit and disagreement of the twins after each time point of the series.

    Parameters
    ----------
    twins : sequence of Twin
        Fitted to the same patient's same observations.
    min_points : int
        The first origin: time points fitted before the first forecast.
    seed : int
        The refit at origin ``L`` uses seed ``seed + L`` (as :func:`~twinbayes.comparison.lfo`).
    **refit_kwargs
        Sampler settings for the refits (default: each twin's own).

    Returns
    -------
    xarray.Dataset
        Dimensions ``origin`` (time points fitted; coordinates ``time``, the last
        time fitted, and ``next_time``) and ``twin``: ``loo_weight`` (stacking on
        PSIS-LOO of the data so far), ``pseudo_bma_weight`` (pseudo-BMA+ on the same),
        ``lfo_weight`` (stacking on the forecast densities of the earlier origins; NaN
        before two origins), ``elpd_loo`` and ``lpd_next`` (log predictive density of the
        next time point) per twin, ``refit_converged``/``refit_reasons`` (each refit's
        gate verdict) and ``max_pareto_k`` (the largest Pareto k of its PSIS-LOO), and
        ``between_share`` of the next point's variance per ``observable`` and ``weighting``
        (``stacking``, ``pseudo_bma`` or ``equal``: how far the twins themselves disagree,
        whatever their weights), computed from each twin's noise-free mean at the next time
        point, exactly as :func:`~twinbayes.decisions.twin_disagreement.disagreement` computes it from
        trajectories.  With a few points stacking often puts all weight on one twin, and
        its share is then 0.
    """
    from .ranking import check_same_data, twin_labels

    twins = list(twins)
    check_same_data(twins)
    points, point_of_obs = time_points(twins[0].design)
    origins = np.arange(min_points, len(points))
    if len(origins) == 0:
        raise ValueError(
            f"{len(points)} time points leave nothing to forecast after min_points={min_points}"
        )
    refitters = [Refitter(t, **refit_kwargs) for t in twins]
    steps = [[_step(r, point_of_obs, int(L), seed + int(L)) for r in refitters] for L in origins]
    elpd = np.array([[s.elpd_loo_i.sum() for s in row] for row in steps])
    lpd = np.array([[s.lpd_next for s in row] for row in steps])
    loo_i = [np.column_stack([s.elpd_loo_i for s in row]) for row in steps]
    weights = {
        "stacking": np.array([stacking_weights(e) for e in loo_i]),
        "pseudo_bma": np.array([pseudo_bma_plus_weights(e, seed=seed)[0] for e in loo_i]),
        "equal": np.full((len(origins), len(twins)), 1.0 / len(twins)),
    }
    lfo_w = np.full_like(weights["stacking"], np.nan)
    for i in range(2, len(origins)):
        lfo_w[i] = stacking_weights(lpd[:i])
    names = list(twins[0].design.times)
    share = np.array(
        [
            [[_share_of(row, w[i], n) for w in weights.values()] for n in names]
            for i, row in enumerate(steps)
        ]
    )
    return xr.Dataset(
        {
            "loo_weight": (("origin", "twin"), weights["stacking"]),
            "pseudo_bma_weight": (("origin", "twin"), weights["pseudo_bma"]),
            "lfo_weight": (("origin", "twin"), lfo_w),
            "elpd_loo": (("origin", "twin"), elpd),
            "lpd_next": (("origin", "twin"), lpd),
            "between_share": (("origin", "observable", "weighting"), share),
            "refit_converged": (("origin", "twin"), [[s.passed for s in row] for row in steps]),
            "refit_reasons": (("origin", "twin"), [[s.reasons for s in row] for row in steps]),
            "max_pareto_k": (("origin", "twin"), [[s.max_pareto_k for s in row] for row in steps]),
        },
        coords={
            "origin": origins,
            "twin": twin_labels(twins),
            "observable": names,
            "weighting": list(weights),
            "time": ("origin", points[origins - 1]),
            "next_time": ("origin", points[origins]),
        },
    )


class _Step(NamedTuple):
    """One twin refitted to the first ``L`` time points: its LOO of them, its forecast of point
    ``L`` (noise-free means per draw, as :func:`~twinbayes.decisions.twin_disagreement.disagreement` uses),
    and the refit's gate verdict and largest Pareto k."""

    elpd_loo_i: np.ndarray
    lpd_next: float
    next_draws: dict[str, np.ndarray]
    passed: bool
    reasons: str
    max_pareto_k: float


def _share_of(row: list[_Step], weights: np.ndarray, name: str) -> float:
    """Between-twin share of the next point's predictive variance of ``name`` (NaN if it is not observed then)."""
    if any(name not in s.next_draws for s in row):
        return np.nan
    return float(between_share([s.next_draws[name] for s in row], weights))


def _step(refitter: Refitter, point_of_obs: np.ndarray, origin: int, seed: int) -> _Step:
    twin = refitter.twin
    params, diagnostics = refitter.posterior(point_of_obs >= origin, seed)
    model = TwinModel.of(twin.spec)
    train = twin.design.split(point_of_obs >= origin)[0]
    ll = np.concatenate(list(model.log_likelihood(params, train).values()), axis=1)
    elpd_loo_i, pareto_k, _ = array_stats.loo(ll.T[:, None, :], chain_axis=-2, draw_axis=-1)
    nxt = twin.design.split(point_of_obs == origin)[1]
    moments = model.moments(params, nxt)
    joint = np.concatenate(list(model.log_likelihood(params, nxt, moments).values()), axis=1).sum(
        axis=1
    )
    return _Step(
        np.asarray(elpd_loo_i, float),
        float(logsumexp(joint) - np.log(len(joint))),
        {n: mean[:, 0] for n, (_, mean, _) in moments.items()},
        diagnostics.passed,
        "; ".join(diagnostics.reasons),
        float(np.max(pareto_k)),
    )
