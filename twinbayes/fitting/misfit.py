"""Absolute checks of one twin: posterior predictive p-values of statistics that see structure.

Stacking ranks twins against each other; it never asks whether any of them fits.  These checks
do, one twin at a time.  For every observable, each posterior draw ``s`` standardises the
observations and a replicated data set drawn under the same draw,

    z_i = e(y_i; mu_i(theta_s), sd_i(theta_s)),     z_rep_i = e(y_rep_i; mu_i(theta_s), sd_i(theta_s)),

(``e`` the inverse of the residual error model's draw, :meth:`ErrorModel.standardise`), and
compares a discrepancy statistic ``T`` of the two (Gelman, Meng & Stern 1996, "Posterior
predictive assessment of model fitness via realized discrepancies", Statistica Sinica 6:733):

    p = Pr(T(z_rep) >= T(z) | y)   (estimated by the share of draws).

Statistics (each sees what a spread check cannot):

* ``trend over time`` -- the least-squares slope of the standardised residuals on time; two-sided
  ``p = 2 min(Pr(T_rep >= T), Pr(T_rep <= T))``: a drift the twin's dynamics do not follow
  (clearance changing over time, a missing phase).
* ``runs of residual signs`` -- the number of sign changes, ``T = -changes``: long runs of
  residuals on one side (Wald & Wolfowitz 1940), a shape the twin cannot bend to.
* ``largest standardised residual`` -- ``max_i |z_i|``: one level the twin cannot reach.

Posterior predictive p-values are conservative (not uniform under a true model: they pile up
near 0.5), so a check that finds nothing is not evidence that a twin fits; with 5-8 levels their
power is low (docs/when-every-twin-is-wrong.md states it, simulated).  A p-value below
``alpha`` (default 0.01 per check) is a *misfit* warning.  The Monte Carlo error of each p is
the binomial error over the draws (the indicator of a replicated statistic is close to
independent between NUTS draws).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["STATISTICS", "Check", "ppp_values", "checks_of", "predictive_checks"]

DEFAULT_ALPHA = 0.01
"""A check below this posterior predictive p-value is reported as misfit."""


def _slope(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``z`` (draws x n) on ``t``, per draw (time in units of its SD)."""
    tc = (t - t.mean()) / (t.std() or 1.0)
    return (z * tc).sum(axis=-1) / (tc**2).sum()


def _runs(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Minus the number of sign changes of ``z`` in time order (larger: longer runs)."""
    s = np.sign(z[..., np.argsort(t, kind="stable")])
    return -(s[..., 1:] != s[..., :-1]).sum(axis=-1).astype(float)


def _largest(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.abs(z).max(axis=-1)


@dataclass(frozen=True)
class Statistic:
    """A discrepancy statistic: its name, ``T(z, t)`` per draw, whether both tails count, and
    the fewest observations it needs."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    two_sided: bool
    min_obs: int


STATISTICS = (
    Statistic("trend over time", _slope, True, 3),
    Statistic("runs of residual signs", _runs, False, 4),
    Statistic("largest standardised residual", _largest, False, 1),
)


@dataclass(frozen=True)
class Check:
    """One posterior predictive check: statistic, observable, p-value and its Monte Carlo error."""

    statistic: str
    observable: str
    p_value: float
    mcse: float
    alpha: float = DEFAULT_ALPHA

    @property
    def misfit(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict:
        return {
            "statistic": self.statistic,
            "observable": self.observable,
            "p_value": self.p_value,
            "mcse": self.mcse,
            "alpha": self.alpha,
            "misfit": self.misfit,
        }

    def warning(self) -> str:
        return (
            f"misfit: {self.statistic} of {self.observable} (posterior predictive p = "
            f"{self.p_value:.3f} +- {self.mcse:.3f} < {self.alpha:g})"
        )


def ppp_values(
    z: np.ndarray, z_rep: np.ndarray, times: np.ndarray, statistics=STATISTICS
) -> dict[str, tuple[float, float]]:
    """Posterior predictive p-values of standardised residuals ``z`` against replicates ``z_rep``.

    Parameters
    ----------
    z, z_rep : ndarray, shape (draws, n)
        Standardised observations and standardised replicated observations, one row per draw.
    times : ndarray, shape (n,)

    Returns
    -------
    dict
        Statistic name -> (p, Monte Carlo standard error), for the statistics ``n`` allows.
    """
    out = {}
    n_draws = z.shape[0]
    for stat in statistics:
        if z.shape[-1] < stat.min_obs:
            continue
        t_obs, t_rep = stat.fn(z, times), stat.fn(z_rep, times)
        tail = float(np.mean(t_rep >= t_obs))
        factor = 1.0
        if stat.two_sided:
            tail, factor = min(tail, float(np.mean(t_rep <= t_obs))), 2.0
        p = min(1.0, factor * tail)
        mcse = factor * float(np.sqrt(max(tail * (1 - tail), 1.0 / n_draws) / n_draws))
        out[stat.name] = (p, mcse)
    return out


def checks_of(moments: dict, design, replicates: dict, alpha: float = DEFAULT_ALPHA) -> list[Check]:
    """Every check of every observable, from the per-draw ``moments`` (observable -> (error
    model, mean, SD), each ``(draws, n)``) and ``replicates`` drawn under the same draws.

    Computed where a fit makes its posterior predictive draws (one solve per draw serves the
    log-likelihood, the replicates and these checks).
    """
    checks = []
    for name, (err, mu, sd) in moments.items():
        y = np.asarray(design.values[name], float)
        y_rep = np.asarray(replicates[name], float).reshape(np.shape(mu))
        with np.errstate(all="ignore"):
            z, z_rep = err.standardise(y, mu, sd), err.standardise(y_rep, mu, sd)
        keep = np.all(np.isfinite(z), axis=-1) & np.all(np.isfinite(z_rep), axis=-1)
        if keep.sum() < 10:
            continue
        for stat, (p, mcse) in ppp_values(z[keep], z_rep[keep], design.times[name]).items():
            checks.append(Check(stat, name, p, mcse, alpha))
    return checks


def predictive_checks(twin) -> list[Check]:
    """The checks a fit stored with its posterior predictive draws (attribute
    ``predictive_checks`` of that group, also in the twin's NetCDF file); empty without them."""
    import json

    if "posterior_predictive" not in twin.idata.children:
        return []
    stored = json.loads(twin.idata["posterior_predictive"].attrs.get("predictive_checks", "[]"))
    return [
        Check(
            c["statistic"], c["observable"], c["p_value"], c["mcse"], c.get("alpha", DEFAULT_ALPHA)
        )
        for c in stored
    ]
