"""PSIS-LOO of one twin with automatic escalation to exact refits or K-fold.

Each twin's expected log pointwise predictive density (elpd) is estimated by
PSIS-LOO (Vehtari, Gelman & Gabry 2017, Stat Comput 27:1413-1432; Pareto
smoothing by arviz-stats).  Where the Pareto shape ``k`` of an observation
exceeds the sample-size dependent threshold ``min(1 - 1/log10(S), 0.7)``
(Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance
sampling", JMLR 25(72)), the importance-sampling estimate is unreliable and
twinbayes escalates automatically: the twin is refitted without that
observation and its elpd computed exactly; when more than ``max_refits``
observations need it, the whole twin is evaluated by K-fold cross-validation
instead.  What was done is recorded per observation (``method``: psis, refit
or kfold).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from ..fitting.twin import Refitter, Twin
from .cv import REFIT_LADDER, REFIT_SETTINGS, HeldOutGate, heldout_elpd, kfold, standard_error

__all__ = ["loo", "k_threshold", "pointwise_loglik", "psis_mcse_i"]

log = logging.getLogger("twinbayes")


def k_threshold(n_draws: int) -> float:
    """Pareto-k above which PSIS is unreliable: ``min(1 - 1/log10(S), 0.7)`` (Vehtari et al. 2024)."""
    return float(min(1.0 - 1.0 / np.log10(n_draws), 0.7))


def pointwise_loglik(twin: Twin) -> xr.DataArray:
    """All observables' log-likelihood stacked on one ``obs`` dimension: (chain, draw, obs)
    (:meth:`~twinbayes.fitting.twin.Twin.pointwise_log_likelihood`)."""
    return twin.pointwise_log_likelihood()


def loo(
    twin: Twin,
    *,
    threshold: float | None = None,
    max_refits: int = 10,
    kfold_k: int = 10,
    seed: int = 0,
    refit: bool = True,
    gate: HeldOutGate = HeldOutGate(),
    **refit_kwargs,
) -> xr.Dataset:
    """PSIS-LOO for one twin with automatic escalation for high Pareto k.

    Parameters
    ----------
    twin : Twin
    threshold : float, optional
        Pareto-k threshold; default :func:`k_threshold` of the number of draws.
    max_refits : int
        At most this many exact refits; with more high-k observations the
        twin is evaluated by K-fold CV instead.
    kfold_k : int
        Folds for that fallback.
    seed : int
    refit : bool
        Set False to only report high k (no refits).
    gate : HeldOutGate
        What each refit must show (:func:`~twinbayes.comparison.cv.heldout_elpd`).
    **refit_kwargs
        Sampler settings for the refits (default: the twin's, with
        :data:`~twinbayes.comparison.cv.REFIT_SETTINGS`' warm-up and draws), and
        ``ladder``, the escalation of a refit that fails ``gate`` (default
        :data:`~twinbayes.comparison.cv.REFIT_LADDER`).

    Returns
    -------
    xarray.Dataset
        Per observation (``obs``): ``elpd_i``, its Monte Carlo SE ``mcse_i``
        (:func:`psis_mcse_i`, a refit's held-out MCSE; NaN under K-fold), ``pareto_k``,
        ``lppd_i``, ``method`` (psis/refit/kfold), ``time``, ``observable``; attributes
        ``elpd``, ``se``, ``mcse`` (of ``elpd``: the observations' in quadrature, or K-fold's),
        ``p_loo``, ``threshold``, ``n_high_k``, ``cv_method``,
        ``refits``, ``refits_unconverged`` (refits that failed their gate) and
        ``failed_refits`` (which, and why)
        and ``elpd_waic``/``p_waic`` (secondary).
    """
    import arviz_stats as azs

    ll = pointwise_loglik(twin)
    tree = xr.DataTree.from_dict(
        {"posterior": twin.idata["posterior"].to_dataset(), "log_likelihood": xr.Dataset({"y": ll})}
    )
    with warnings.catch_warnings():  # high Pareto k is handled below, not just warned about
        warnings.filterwarnings(
            "ignore", message="Estimated shape parameter of Pareto", category=UserWarning
        )
        res = azs.loo(tree, pointwise=True, var_name="y")
    s = ll.sizes["chain"] * ll.sizes["draw"]
    thr = k_threshold(s) if threshold is None else float(threshold)
    flat = ll.values.reshape(s, -1)
    lppd_i = logsumexp(flat, axis=0) - np.log(s)
    elpd_i = np.asarray(res.elpd_i.values, float).copy()
    pareto_k = np.asarray(res.pareto_k.values, float)
    method = np.array(["psis"] * len(elpd_i), dtype=object)
    mcse_i = np.full(len(elpd_i), np.nan)
    high = pareto_k > thr
    cv_method, refits, failed, why = "psis-loo", 0, 0, ""
    kfold_mcse = None
    if refit and high.any():
        elpd_i, cv_method, refits, failed, why, kfold_mcse = _escalate(
            twin, elpd_i, method, mcse_i, high, max_refits, kfold_k, seed, gate, refit_kwargs
        )
        log.info(
            "%s: %d observation(s) with Pareto k > %.2f -> %s",
            twin.name,
            int(high.sum()),
            thr,
            cv_method,
        )
    p_waic_i = flat.var(axis=0, ddof=1)
    mcse_i = np.where(method == "psis", psis_mcse_i(ll.values, res.log_weights.values), mcse_i)
    ds = xr.Dataset(
        {
            "elpd_i": ("obs", elpd_i),
            "mcse_i": ("obs", mcse_i),
            "pareto_k": ("obs", pareto_k),
            "lppd_i": ("obs", lppd_i),
            "method": ("obs", method.astype(str)),
        },
        coords={"obs": ll["obs"].values, "time": ("obs", ll["time"].values)},
    )
    ds.attrs.update(
        twin=twin.name,
        elpd=float(elpd_i.sum()),
        se=float(standard_error(elpd_i)),
        mcse=float(np.sqrt(np.sum(mcse_i**2))) if kfold_mcse is None else kfold_mcse,
        p_loo=float((lppd_i - elpd_i).sum()),
        threshold=thr,
        n_high_k=int(high.sum()),
        cv_method=cv_method,
        refits=refits,
        refits_unconverged=failed,
        failed_refits=why,
        elpd_waic=float((lppd_i - p_waic_i).sum()),
        p_waic=float(p_waic_i.sum()),
    )
    return ds


def _escalate(twin, elpd_i, method, mcse_i, high, max_refits, kfold_k, seed, gate, refit_kwargs):
    """Replace the PSIS elpd of high-k observations by exact refits, or the whole twin's by K-fold.

    Updates ``method`` and ``mcse_i`` in place; returns ``(elpd_i, cv_method, refits, failed,
    why, kfold_mcse)``: how many refits failed their gate after escalation, and which and why
    (``"obs j: reasons | ..."``, or K-fold's ``"fold f: reasons | ..."``), and K-fold's MCSE of
    the whole elpd (``None`` without K-fold: the refits' MCSEs are per observation).
    """
    if high.sum() > max_refits:
        kf = kfold(twin, k=kfold_k, seed=seed, gate=gate, **refit_kwargs)
        method[:] = "kfold"
        k = kf.attrs["k"]
        failed = k - kf.attrs["refits_converged"]
        return (
            kf["elpd_i"].values,
            f"{k}-fold cv",
            k,
            failed,
            kf.attrs["failed_folds"],
            float(kf.attrs["mcse"]),
        )
    settings = {**REFIT_SETTINGS, **refit_kwargs}
    ladder = settings.pop("ladder", REFIT_LADDER)
    refitter = Refitter(twin, **settings)
    failures = []
    for j in np.flatnonzero(high):
        hold = np.zeros(len(elpd_i), bool)
        hold[j] = True
        held = heldout_elpd(refitter, hold, seed + 1 + j, gate, ladder)
        elpd_i[j] = held.elpd_i[0]
        mcse_i[j] = held.mcse
        method[j] = "refit"
        if not held.passed:
            failures.append(f"obs {j}: " + "; ".join(held.reasons))
    n = int(high.sum())
    return elpd_i, "psis-loo + exact refits", n, len(failures), " | ".join(failures), None


def psis_mcse_i(ll: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """Monte Carlo SE of each PSIS-LOO ``elpd_i`` from the log-likelihood and the smoothed weights.

    With normalised weights ``w_s`` and ``p_s = p(y_i | theta_s)``, the estimate
    ``E_i = sum_s w_s p_s`` has variance about ``sum_s w_s^2 (p_s - E_i)^2 / r_eff`` (the
    self-normalised importance sampler's, inflated by the draws' relative efficiency ``r_eff``
    of ``p_s``), and ``log E_i`` an SE of ``sqrt(var) / E_i`` (delta method): the loo R package's
    ``mcse_elpd`` before its parametric refinement (Vehtari, Gelman & Gabry 2017, Stat Comput
    27:1413-1432, sec. 2.1 and 3.3; Vehtari et al. 2024, JMLR 25(72)).

    Parameters
    ----------
    ll : numpy.ndarray
        Pointwise log-likelihood, (chain, draw, obs).
    log_weights : numpy.ndarray
        PSIS log weights normalised over the draws, (obs, chain, draw) (``arviz_stats.loo``).
    """
    from arviz_stats.base import array_stats

    ll = np.moveaxis(np.asarray(ll, float), -1, 0)  # (obs, chain, draw)
    p = np.exp(ll - ll.max(axis=(1, 2), keepdims=True))
    w = np.exp(np.asarray(log_weights, float))
    w = w / w.sum(axis=(1, 2), keepdims=True)
    e = np.sum(w * p, axis=(1, 2))
    r_eff = np.asarray(array_stats.ess(p, method="mean"), float) / (p.shape[1] * p.shape[2])
    r_eff = np.clip(np.nan_to_num(r_eff, nan=1.0), 1e-3, None)
    var = np.sum(w**2 * (p - e[:, None, None]) ** 2, axis=(1, 2)) / r_eff
    return np.sqrt(var) / e
