"""Exact cross-validation by refits: held-out elpd and K-fold (Vehtari, Gelman & Gabry 2017, sec. 4.1).

Refits go through :class:`~twinbayes.fitting.twin.Refitter`, which compiles the
twin's weighted model once and changes only 0/1 observation weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from ..fitting.diagnostics import Gate
from ..fitting.ladder import Ladder, Rung
from ..fitting.twin import Refitter, Twin
from ..model.twin_model import TwinModel

__all__ = [
    "kfold",
    "heldout_elpd",
    "REFIT_SETTINGS",
    "REFIT_LADDER",
    "HeldOutGate",
    "HeldOut",
    "standard_error",
]


def standard_error(values: np.ndarray, axis=0) -> np.ndarray:
    """Standard error of a sum of pointwise values: ``sqrt(n var)`` with the n-1 variance (as in loo and ArviZ)."""
    n = np.shape(values)[axis]
    return np.sqrt(n * np.var(values, axis=axis, ddof=1))


@dataclass(frozen=True)
class HeldOutGate:
    """What a cross-validation refit must meet for its held-out elpd to be used.

    A refit estimates one number: the elpd of the observations it leaves out,
    ``sum_i log((1/S) sum_s p(y_i | theta_s))``.  The gate asks what that estimate
    needs, not what a fit reported for its parameters needs: chains that mixed
    (rank-normalised split R-hat of every parameter), the fit gate's rules on
    divergences and tree depth, and a small Monte Carlo error of the held-out elpd
    itself.  Its MCSE is the delta method on the MCSE of each mean likelihood,
    ``mcse(lpd_i) = mcse(mean_s p_is) / mean_s p_is`` (arviz-stats' MCSE of the
    mean, which accounts for autocorrelation), summed over the held-out points
    (an upper bound whatever their correlation); the ESS of each mean likelihood
    must reach ``ess_min`` for that MCSE to be trusted (Vehtari, Gelman, Simpson,
    Carpenter & Bürkner 2021, Bayesian Analysis 16:667, sec. 3).

    Parameters
    ----------
    rhat_max : float
        Largest R-hat of any parameter: 1.05 catches chains in different places
        (a mode switch, a stuck chain); the held-out elpd's own precision is asked
        by ``mcse_max``, and the multi-chain ESS behind it falls when chains disagree.
        (1.01, the fit gate's, is within R-hat's own noise for a refit of 4 x 400 draws.)
    mcse_max : float
        Largest MCSE of the refit's held-out elpd (log scale).  With the default
        0.1, 10 folds add at most ~0.3 of Monte Carlo error to a K-fold elpd (in
        quadrature: the folds are independent refits), small beside its SE (a few
        units) and that of a difference between twins (about 1 or more).
    ess_min : float
        Smallest ESS of each held-out point's mean likelihood.
    """

    rhat_max: float = 1.05
    mcse_max: float = 0.1
    ess_min: float = 100.0

    def parameter_gate(self, fit_gate: Gate) -> Gate:
        """The fit gate without its ESS floors (the held-out elpd's precision replaces them)."""
        return replace(fit_gate, rhat_max=self.rhat_max, ess_bulk_min=0.0, ess_tail_min=0.0)


class HeldOut(NamedTuple):
    """A refit's held-out elpd (per left-out observation), its MCSE, and the gate's verdict."""

    elpd_i: np.ndarray
    mcse: float
    passed: bool
    reasons: tuple[str, ...]


REFIT_SETTINGS = {"tune": 300, "draws": 400}
"""Warm-up and draws per chain of a refit for a held-out elpd (K-fold folds, exact LOO refits):
what the held-out elpd needs (:class:`HeldOutGate`); a refit that falls short is escalated
(:data:`REFIT_LADDER`)."""

REFIT_LADDER = Ladder(rungs=(Rung(0.99, 2.0, 2.0), Rung(0.995, 4.0, 4.0)))
"""Escalation of a refit that fails its :class:`HeldOutGate`: more warm-up and draws, smaller steps."""


def heldout_elpd(
    refitter: Refitter,
    holdout: np.ndarray,
    seed: int,
    gate: HeldOutGate = HeldOutGate(),
    ladder: Ladder = REFIT_LADDER,
) -> HeldOut:
    """Refit without the observations flagged in ``holdout`` (bool over obs); their exact elpd.

    The refit is judged by ``gate`` and refitted along ``ladder`` while it falls short; the last
    attempt is returned, with the gate's verdict and reasons.
    """
    base = {**refitter.settings, "seed": seed}
    chains = int(base["chains"])
    failed: frozenset[str] = frozenset()
    for step in range(len(ladder.rungs) + 1):
        s = ladder.settings(base, step, failed) if step else base
        params, diagnostics = refitter.posterior(
            holdout,
            s["seed"],
            gate=gate.parameter_gate(refitter.twin.diagnostics.gate),
            tune=s["tune"],
            draws=s["draws"],
            target_accept=s["target_accept"],
            **({"maxdepth": s["maxdepth"]} if "maxdepth" in s else {}),
        )
        failed = frozenset(
            k for k in ("R-hat", "tree depth", "divergent") if diagnostics.failed_on(k)
        )
        ll = _heldout_loglik(refitter, params, holdout)
        result = _judge(ll.reshape(chains, -1, ll.shape[1]), diagnostics.reasons, gate)
        if result.passed:
            break
    return result


def _heldout_loglik(refitter: Refitter, params: dict, holdout: np.ndarray) -> np.ndarray:
    """Log-likelihood of the held-out observations under each refit draw: (draws, held out)."""
    twin = refitter.twin
    ll = TwinModel.of(twin.spec).log_likelihood(params, twin.design.split(holdout)[1])
    return np.concatenate(list(ll.values()), axis=1)


def _judge(ll: np.ndarray, reasons: list[str], gate: HeldOutGate) -> HeldOut:
    """Held-out elpd, MCSE and verdict from the log-likelihood (chain, draw, held out)."""
    from arviz_stats.base import array_stats

    lpd = logsumexp(ll, axis=(0, 1)) - np.log(ll.shape[0] * ll.shape[1])
    ratio = np.moveaxis(np.exp(ll - ll.max(axis=(0, 1))), -1, 0)  # (held out, chain, draw)
    mean = ratio.mean(axis=(1, 2))
    mcse = float(np.sum(np.asarray(array_stats.mcse(ratio, method="mean")) / mean))
    ess = np.asarray(array_stats.ess(ratio, method="mean"), float)
    reasons = list(reasons)
    if not np.isfinite(mcse) or mcse > gate.mcse_max:
        reasons.append(f"MCSE of the held-out elpd is {mcse:.3f} > {gate.mcse_max}")
    if not np.all(ess >= gate.ess_min):
        reasons.append(f"ESS of a held-out likelihood is {np.nanmin(ess):.0f} < {gate.ess_min:.0f}")
    return HeldOut(lpd, mcse, not reasons, tuple(reasons))


def kfold(
    twin: Twin,
    k: int = 10,
    groups: Sequence | None = None,
    seed: int = 0,
    gate: HeldOutGate = HeldOutGate(),
    ladder: Ladder = REFIT_LADDER,
    **refit_kwargs,
) -> xr.Dataset:
    """K-fold cross-validation of a twin (exact refits, one per fold).

    Each fold is refitted with the twin's compiled model (0/1 observation
    weights, no compilation) and judged by ``gate`` on what it estimates, the
    held-out elpd; a fold that fails is refitted along ``ladder``, and one that
    still fails is counted in ``refits_converged`` and named in ``failed_folds``.

    Parameters
    ----------
    twin : Twin
    k : int
        Number of folds (at most the number of observations or groups).
    groups : sequence, optional
        A label per observation (in :meth:`Design.index` order); observations
        of one group are held out together (grouped K-fold).
    seed : int
        Seeds the fold assignment and the refits.
    gate : HeldOutGate
    ladder : Ladder
        Escalation of a failing fold (``NO_LADDER``: none).
    **refit_kwargs
        Sampler settings of the refits: the twin's, with :data:`REFIT_SETTINGS`'s
        warm-up and draws unless given.

    Returns
    -------
    xarray.Dataset
        ``elpd_i`` and ``fold`` per observation; attributes ``elpd``, ``se``,
        ``mcse`` (Monte Carlo SE of ``elpd``: the folds' MCSEs in quadrature, as
        independent refits), ``k``, ``refits_converged``, ``failed_folds``.

    References
    ----------
    Vehtari A, Gelman A, Gabry J (2017). Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC. Stat Comput 27:1413-1432, sec. 4.1.
    """
    fold = _folds(twin.design.n_obs, k, groups, seed)
    k = int(fold.max()) + 1
    elpd_i = np.empty(len(fold))
    results = []
    refitter = Refitter(twin, **{**REFIT_SETTINGS, **refit_kwargs})
    for f in range(k):
        hold = fold == f
        results.append(heldout_elpd(refitter, hold, seed + 1 + f, gate, ladder))
        elpd_i[hold] = results[-1].elpd_i
    ds = xr.Dataset({"elpd_i": ("obs", elpd_i), "fold": ("obs", fold)})
    ds.attrs.update(
        elpd=float(elpd_i.sum()),
        se=float(standard_error(elpd_i)),
        mcse=float(np.sqrt(sum(r.mcse**2 for r in results))),
        k=k,
        refits_converged=int(sum(r.passed for r in results)),
        failed_folds=" | ".join(
            f"fold {f}: " + "; ".join(r.reasons) for f, r in enumerate(results) if not r.passed
        ),
    )
    return ds


def _folds(n: int, k: int, groups: Sequence | None, seed: int) -> np.ndarray:
    """Fold of each observation: groups (default: each observation its own) dealt at random to ``k`` folds."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) if groups is None else np.asarray(groups)
    if len(labels) != n:
        raise ValueError(f"groups has {len(labels)} labels for {n} observations")
    unique = np.unique(labels)
    k = int(min(k, len(unique)))
    if k < 2:
        raise ValueError("K-fold needs at least 2 folds")
    fold_of_group = dict(zip(rng.permutation(unique), np.arange(len(unique)) % k))
    return np.array([fold_of_group[g] for g in labels])
