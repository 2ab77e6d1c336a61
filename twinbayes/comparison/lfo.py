"""Leave-future-out cross-validation of a twin's forecasts (Bürkner, Gabry & Vehtari 2020).

PSIS-LOO asks how well a twin predicts a point in the middle of a series; a twin
that is updated as data arrive must instead *forecast*.  Leave-future-out CV (LFO)
fits the twin to the first ``L`` time points and scores its predictive density of
the next ``M``, for every forecast origin ``L``:

.. math::

    \\mathrm{elpd}_{\\mathrm{LFO}} = \\sum_{L=L_0}^{N-M} \\log p(y_{L+1:L+M} \\mid y_{1:L}).

*Exact* LFO refits at every origin.  *Approximate* LFO (PSIS-LFO) carries the
posterior of the last refit ``i*`` forward by Pareto-smoothed importance sampling
with ratios :math:`r_s = \\prod_{j=i^*+1}^{L} p(y_j \\mid \\theta_s)` and refits only
where the Pareto :math:`\\hat k` of those ratios exceeds a threshold (0.7).

Refits reuse the twin's compiled model (0/1 observation weights,
:class:`~twinbayes.fitting.twin.Refitter`): the doses and the state of the dynamics
across the origin are the full design's, only the likelihood of the future is
switched off.  A *time point* is one observation time; where several observables
are measured at one time their log densities are summed (one joint density per
time point, as ``arviz_stats.lfo_cv`` requires).  Forecasts are also scored by the
continuous ranked probability score (CRPS, Gneiting & Raftery 2007) of every
observation in the block, computed from posterior predictive draws with the
same importance weights.

References
----------
Bürkner P-C, Gabry J, Vehtari A (2020). Approximate leave-future-out cross-validation
for Bayesian time series models. J Stat Comput Simul 90(14):2499-2523.
Gneiting T, Raftery AE (2007). Strictly proper scoring rules, prediction, and
estimation. J Am Stat Assoc 102(477):359-378, eq. 21.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy.special import logsumexp

from ..dynamics.design import Design
from ..fitting.twin import Refitter, Twin
from ..model.twin_model import TwinModel
from .cv import standard_error

__all__ = ["lfo", "log_forecast_error", "time_points", "point_sums", "weighted_crps"]


class Forecast(NamedTuple):
    """A fit to the first ``origin`` time points, with what it says about the rest.

    Attributes
    ----------
    origin : int
        Number of time points it was fitted to.
    log_lik : ndarray, shape (S, n_points - origin)
        Joint log density of each later time point under each draw.
    predictive : ndarray, shape (S, n_future_obs)
        Posterior predictive draws of every later observation.
    converged : bool
        Whether the refit passed the twin's convergence gate.
    """

    origin: int
    log_lik: np.ndarray
    predictive: np.ndarray
    converged: bool


def time_points(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """The distinct observation times (sorted) and the time point of each observation.

    Observations are in :meth:`~twinbayes.dynamics.design.Design.index` order.
    """
    times = np.concatenate([np.asarray(t, float) for t in design.times.values()])
    points = np.unique(times)
    return points, np.searchsorted(points, times)


def point_sums(values: np.ndarray, point: np.ndarray, n_points: int) -> np.ndarray:
    """Sum per-observation values ``(S, n_obs)`` into their time points ``(S, n_points)`` (joint log densities)."""
    values = np.asarray(values, float)
    out = np.zeros(values.shape[:-1] + (n_points,))
    np.add.at(np.moveaxis(out, -1, 0), point, np.moveaxis(values, -1, 0))
    return out


def weighted_crps(draws: np.ndarray, y: float, log_weights: np.ndarray | None = None) -> float:
    """CRPS of a (weighted) sample as forecast of ``y``; lower is better.

    .. math::

        \\mathrm{CRPS}(F, y) = E_F|X - y| - \\tfrac12 E_F|X - X'|

    (Gneiting & Raftery 2007, eq. 21), with weighted sample moments; the second
    term in O(S log S) from the sorted sample:
    :math:`\\sum_{ij} w_i w_j |x_i - x_j| = 2\\sum_i w_i x_i (2F_i - w_i - 1)`,
    :math:`F_i` the cumulative weight up to and including draw ``i``.
    """
    x = np.asarray(draws, float)
    w = (
        np.full(x.size, 1.0 / x.size)
        if log_weights is None
        else np.exp(log_weights - logsumexp(log_weights))
    )
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    spread = 2.0 * np.sum(w * x * (2.0 * np.cumsum(w) - w - 1.0))
    return float(np.sum(w * np.abs(x - y)) - 0.5 * spread)


def _psis(log_ratios: np.ndarray) -> tuple[np.ndarray | None, float]:
    """PSIS log weights of ``exp(log_ratios)`` and their Pareto k; ``(None, inf)`` where invalid.

    ``array_stats.psislw`` smooths ``exp(-ary)`` (it is written for LOO), hence the sign.
    The draws of all chains are pooled (relative efficiency 1).
    """
    if not np.all(np.isfinite(log_ratios)):
        return None, np.inf
    try:
        log_weights, k = array_stats.psislw(-log_ratios, 1.0)
    except ValueError:
        return None, np.inf
    k = float(k)
    if not np.isfinite(k) or not np.all(np.isfinite(log_weights) | np.isneginf(log_weights)):
        return None, np.inf
    return np.asarray(log_weights), k


def _forecast(refitter: Refitter, point_of_obs: np.ndarray, origin: int, seed: int) -> Forecast:
    """Refit to the first ``origin`` time points; the later points' log densities and predictive draws."""
    twin = refitter.twin
    future = point_of_obs >= origin
    params, diagnostics = refitter.posterior(future, seed)
    held_out = twin.design.split(future)[1]
    model = TwinModel.of(twin.spec)
    moments = model.moments(params, held_out)
    ll = np.concatenate(list(model.log_likelihood(params, held_out, moments).values()), axis=1)
    rng = np.random.default_rng(seed)
    predictive = np.concatenate(
        list(model.simulate(params, held_out, rng, moments).values()), axis=1
    )
    # held_out keeps Design.index order, so the later observations' points are point_of_obs[future]
    joint = point_sums(ll, point_of_obs[future] - origin, int(point_of_obs.max()) + 1 - origin)
    return Forecast(origin, joint, predictive, diagnostics.passed)


def lfo(
    twin: Twin,
    *,
    min_points: int = 3,
    horizon: int = 1,
    method: str = "approx",
    k_threshold: float = 0.7,
    seed: int = 0,
    **refit_kwargs,
) -> xr.Dataset:
    """Leave-future-out cross-validation of ``horizon``-step-ahead forecasts of a twin.

    Parameters
    ----------
    twin : Twin
    min_points : int
        Time points the first forecast is made from (``L_0``).
    horizon : int
        Forecast horizon ``M``: each origin is scored on the joint density of the next ``M`` time points.
    method : {"approx", "exact"}
        PSIS between refits (refit where Pareto k > ``k_threshold``), or a refit at every origin.
    k_threshold : float
        Bürkner et al. (2020) recommend 0.7 (0.6 to be conservative).
    seed : int
        The fit at origin ``L`` uses seed ``seed + L``.
    **refit_kwargs
        Sampler settings for the refits (default: the twin's own).

    Returns
    -------
    xarray.Dataset
        Per forecast origin (dimension ``origin``, coordinate: the number of time points
        fitted; ``time``: the last time fitted; ``forecast_time``: the first time forecast):
        ``elpd_i``, ``crps_i`` (summed over the block's observations), ``lpd_i`` (the
        full-data posterior's density of the block), ``pareto_k`` (NaN where a fit was
        made), ``refit`` (a fit was made at this origin) and ``refit_converged``.  Per forecast
        of a later observation from an origin (dimension ``forecast``; every later observation,
        whatever ``horizon``): ``forecast_origin_index`` (position on ``origin``),
        ``forecast_ahead`` (its time after the origin's last fitted time), ``forecast_error``
        and ``forecast_cov`` (on ``forecast`` x ``forecast_``, zero between origins;
        :func:`log_forecast_error`).
        Attributes: ``elpd``, ``se``, ``p_lfo``, ``crps``, ``crps_se``, ``n_refits``
        (fits after the first, as ``arviz_stats.lfo_cv``), ``refits_unconverged``,
        ``method``, ``horizon``, ``min_points``, ``k_threshold``.

    References
    ----------
    Bürkner P-C, Gabry J, Vehtari A (2020). J Stat Comput Simul 90(14):2499-2523, sec. 3.
    """
    if method not in ("approx", "exact"):
        raise ValueError(f"method must be 'approx' or 'exact', got {method!r}")
    points, point_of_obs = time_points(twin.design)
    n = len(points)
    if not (
        isinstance(min_points, int)
        and min_points >= 1
        and isinstance(horizon, int)
        and horizon >= 1
    ):
        raise ValueError("min_points and horizon must be positive whole numbers")
    if min_points + horizon > n:
        raise ValueError(
            f"{twin.name}: {n} observation times leave no forecast with min_points={min_points} "
            f"and horizon={horizon}; lower min_points"
        )
    origins = np.arange(min_points, n - horizon + 1)
    refitter = Refitter(twin, **refit_kwargs)
    values = {
        "elpd_i": [],
        "crps_i": [],
        "pareto_k": [],
        "refit": [],
        "refit_converged": [],
    }
    star, ahead = None, []
    for origin in origins:
        log_weights, k = None, np.nan
        if star is not None and method == "approx":
            log_weights, k = _psis(star.log_lik[:, : origin - star.origin].sum(axis=1))
        if star is None or method == "exact" or k > k_threshold:
            star, log_weights, k = (
                _forecast(refitter, point_of_obs, int(origin), seed + int(origin)),
                None,
                np.nan,
            )
        scores = _score(star, origin, horizon, point_of_obs, twin, log_weights)
        for key, value in zip(values, (*scores, k, star.origin == origin, star.converged)):
            values[key].append(value)
        ahead.append(_errors_ahead(star, origin, points, point_of_obs, twin, log_weights))
    ds = _result(twin, values, origins, points, horizon, method, k_threshold, min_points)
    return ds.assign(_forecasts_ahead(ahead))


def _score(
    star: Forecast, origin: int, horizon: int, point_of_obs: np.ndarray, twin: Twin, log_weights
):
    """(elpd, CRPS) of the block of ``horizon`` points after ``origin`` under the (weighted) fit ``star``."""
    offset = origin - star.origin
    block = star.log_lik[:, offset : offset + horizon].sum(axis=1)
    lw = np.zeros_like(block) if log_weights is None else log_weights
    elpd = float(logsumexp(lw + block) - logsumexp(lw))
    later = point_of_obs[point_of_obs >= star.origin]
    in_block = (later >= origin) & (later < origin + horizon)
    y = _observed(twin)[point_of_obs >= star.origin]
    crps = sum(
        weighted_crps(star.predictive[:, j], y[j], log_weights) for j in np.flatnonzero(in_block)
    )
    return elpd, float(crps)


def _observed(twin: Twin) -> np.ndarray:
    """Every observation in :meth:`~twinbayes.dynamics.design.Design.index` order."""
    return np.concatenate([np.asarray(twin.design.values[n], float) for n in twin.design.times])


def _errors_ahead(
    star: Forecast, origin: int, points, point_of_obs, twin: Twin, log_weights
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time ahead, log error and log covariance (:func:`log_forecast_error`) of the forecast from
    ``origin`` of every later observation (observations without a positive level or mean
    dropped)."""
    later = point_of_obs[point_of_obs >= star.origin]
    ahead = later >= origin
    y = _observed(twin)[point_of_obs >= star.origin][ahead]
    error, cov = log_forecast_error(star.predictive[:, ahead], y, log_weights)
    h = points[later[ahead]] - points[origin - 1]
    ok = np.isfinite(error)
    return h[ok], error[ok], cov[np.ix_(ok, ok)]


def _forecasts_ahead(ahead: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The forecasts of every later observation from every origin, as variables on ``forecast``
    (the covariance block-diagonal by origin)."""
    sizes = [len(h) for h, _, _ in ahead]
    cov = np.zeros((sum(sizes), sum(sizes)))
    at = np.cumsum([0, *sizes])
    for (_, _, c), a, b in zip(ahead, at[:-1], at[1:]):
        cov[a:b, a:b] = c
    origin = np.repeat(np.arange(len(ahead)), sizes)
    return {
        "forecast_origin_index": ("forecast", origin),
        "forecast_ahead": ("forecast", np.concatenate([h for h, _, _ in ahead])),
        "forecast_error": ("forecast", np.concatenate([e for _, e, _ in ahead])),
        "forecast_cov": (("forecast", "forecast_"), cov),
    }


def log_forecast_error(
    draws: np.ndarray, y: np.ndarray, log_weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Errors and covariance of forecasts on the log scale.

    Where every draw :math:`\\hat y_{sj}` is positive, the weighted mean and covariance of
    :math:`\\log \\hat y_{sj}` (``w`` the normalised importance weights) and
    :math:`e_j = \\log y_j - \\sum_s w_s \\log \\hat y_{sj}`.  Otherwise (noisy draws of a
    level near zero can be negative) the forecast's weighted means :math:`m_j` and covariances :math:`S_{ij}` over the draws
    :math:`\\hat y_{sj}` give the multivariate
    log-normal with those moments: log covariance :math:`C_{ij} = \\log(1 + S_{ij}/(m_i m_j))`
    and log medians :math:`\\log m_j - C_{jj} / 2`; the error is
    :math:`e_j = \\log y_j - \\log m_j + C_{jj} / 2`.  Errors are NaN where ``y_j`` or
    :math:`m_j` is not positive (and so is that row and column of ``C``).
    """
    draws, y = np.asarray(draws, float), np.asarray(y, float)
    w = (
        np.full(len(draws), 1.0 / len(draws))
        if log_weights is None
        else np.exp(log_weights - logsumexp(log_weights))
    )
    log_y = np.log(np.where(y > 0, y, np.nan))
    if np.all(draws > 0):  # the log scale itself: robust to the heavy right tails of few levels
        logs = np.log(draws)
        centre = w @ logs
        dev = logs - centre
        return log_y - centre, (dev.T * w) @ dev
    m = w @ draws
    m = np.where(m > 0, m, np.nan)
    dev = draws - m
    cov = np.log1p(np.maximum((dev.T * w) @ dev / np.outer(m, m), -1.0 + 1e-12))
    bound = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))  # a correlation within [-1, 1]
    cov = np.clip(cov, -bound, bound)
    return log_y - np.log(m) + np.diag(cov) / 2, cov


def _result(twin, values, origins, points, horizon, method, k_threshold, min_points) -> xr.Dataset:
    """The per-origin table and its totals (with the full-data lpd for ``p_lfo``)."""
    from .loo import pointwise_loglik

    ll = pointwise_loglik(twin).values
    ll = ll.reshape(-1, ll.shape[-1])
    _, point_of_obs = time_points(twin.design)
    lpd = [
        float(
            logsumexp(ll[:, (point_of_obs >= o) & (point_of_obs < o + horizon)].sum(axis=1))
            - np.log(len(ll))
        )
        for o in origins
    ]
    ds = xr.Dataset(
        {key: ("origin", np.asarray(v)) for key, v in values.items()} | {"lpd_i": ("origin", lpd)},
        coords={
            "origin": origins,
            "time": ("origin", points[origins - 1]),
            "forecast_time": ("origin", points[origins]),
        },
    )
    elpd, crps = ds["elpd_i"].values, ds["crps_i"].values
    ds.attrs.update(
        twin=twin.name,
        elpd=float(elpd.sum()),
        se=float(standard_error(elpd)) if len(elpd) > 1 else 0.0,
        p_lfo=float((ds["lpd_i"].values - elpd).sum()),
        crps=float(crps.mean()),
        crps_se=float(crps.std(ddof=1) / np.sqrt(len(crps))) if len(crps) > 1 else 0.0,
        n_refits=int(ds["refit"].sum()) - 1,
        refits_unconverged=int((ds["refit"] & ~ds["refit_converged"]).sum()),
        method=method,
        horizon=horizon,
        min_points=min_points,
        k_threshold=k_threshold,
    )
    return ds
