"""Convergence diagnostics and the gate that everything downstream respects.

The defaults follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for
assessing convergence of MCMC", Bayesian Analysis 16(2):667-718: rank-normalised
split R-hat below 1.01 and bulk and tail ESS above 100 per chain (400 for four
chains); and Betancourt (2017), "A conceptual introduction to Hamiltonian Monte
Carlo" (arXiv:1701.02434), for divergences and tree-depth saturation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

__all__ = ["Gate", "Diagnostics", "check_convergence", "diagnose"]


@dataclass(frozen=True)
class Gate:
    """Thresholds a fit must meet to be used downstream.

    Parameters
    ----------
    rhat_max : float
        Largest acceptable rank-normalised split R-hat.
    ess_bulk_min, ess_tail_min : float
        Smallest acceptable bulk and tail effective sample sizes.
    max_divergent : int
        Largest acceptable number of divergent transitions after warm-up.
    max_treedepth_fraction : float
        Largest acceptable fraction of draws whose tree hit the maximum depth.
    """

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    max_divergent: int = 0
    max_treedepth_fraction: float = 0.0


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of one fit and the gate's verdict.

    Attributes
    ----------
    table : xarray.Dataset
        ``rhat``, ``ess_bulk`` and ``ess_tail`` per parameter (dimension ``parameter``).
    divergent : int
        Divergent transitions after warm-up.
    treedepth_fraction : float
        Fraction of draws that hit the maximum tree depth.
    passed : bool
    reasons : list of str
        Why the gate failed (empty when it passed).
    """

    table: xr.Dataset
    divergent: int
    treedepth_fraction: float
    gate: Gate
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        status = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        return (
            f"max R-hat {float(self.table.rhat.max()):.3f}, min bulk ESS {float(self.table.ess_bulk.min()):.0f}, "
            f"min tail ESS {float(self.table.ess_tail.min()):.0f}, {self.divergent} divergent, "
            f"{_percent(self.treedepth_fraction)} at max tree depth -> gate {status}"
        )


def check_convergence(idata, var_names: list[str], gate: Gate = Gate()) -> Diagnostics:
    """Compute R-hat, ESS, divergences and tree-depth saturation; apply the gate.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``posterior`` and ``sample_stats`` groups.
    var_names : list of str
        Scalar parameters to check.
    gate : Gate
    """
    post = idata["posterior"].to_dataset()
    stats = idata["sample_stats"].to_dataset()
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    return diagnose(
        {n: np.asarray(post[n].values, float) for n in var_names},
        np.asarray(stats["diverging"].values) if "diverging" in stats else np.zeros(1, bool),
        np.asarray(stats[depth_var].values) if depth_var else np.zeros(1, bool),
        gate,
    )


def diagnose(
    draws: dict[str, np.ndarray], diverging: np.ndarray, maxdepth: np.ndarray, gate: Gate = Gate()
) -> Diagnostics:
    """The gate on kept draws given as arrays: ``draws[name]`` of shape (chain, draw).

    ``diverging`` and ``maxdepth`` flag each kept draw (any shape).  R-hat is
    arviz-stats' rank-normalised split R-hat, ESS its bulk and tail ESS (the
    functions the DataTree accessors call, on the arrays directly).
    """
    from arviz_stats.base import array_stats
    from arviz_stats.validate import validate_ci_prob

    prob = validate_ci_prob(None)  # the tail ESS' default quantiles, as ``arviz_stats.ess``
    names = list(draws)
    arr = np.stack([draws[n] for n in names])
    table = xr.Dataset(
        {
            "rhat": ("parameter", np.asarray(array_stats.rhat(arr, method="rank"), float)),
            "ess_bulk": ("parameter", np.asarray(array_stats.ess(arr, method="bulk"), float)),
            "ess_tail": (
                "parameter",
                np.asarray(array_stats.ess(arr, method="tail", prob=prob), float),
            ),
        },
        coords={"parameter": names},
    )
    divergent = int(np.sum(diverging))
    treedepth = float(np.mean(maxdepth))
    reasons = []
    for name in names:
        row = table.sel(parameter=name)
        r, eb, et = float(row.rhat), float(row.ess_bulk), float(row.ess_tail)
        if not np.isfinite(r) or r > gate.rhat_max:
            reasons.append(f"R-hat of {name} is {r:.4f} > {gate.rhat_max}")
        if not np.isfinite(eb) or eb < gate.ess_bulk_min:
            reasons.append(f"bulk ESS of {name} is {eb:.0f} < {gate.ess_bulk_min:.0f}")
        if not np.isfinite(et) or et < gate.ess_tail_min:
            reasons.append(f"tail ESS of {name} is {et:.0f} < {gate.ess_tail_min:.0f}")
    if divergent > gate.max_divergent:
        reasons.append(f"{divergent} divergent transitions > {gate.max_divergent}")
    if treedepth > gate.max_treedepth_fraction:
        reasons.append(
            f"{int(np.sum(maxdepth))} of {np.size(maxdepth)} draws ({_percent(treedepth)}) hit the "
            "maximum tree depth"
        )
    return Diagnostics(table, divergent, treedepth, gate, not reasons, reasons)


def _percent(fraction: float) -> str:
    """``fraction`` in percent, never a nonzero one shown as 0.0 % (0.04 % of draws fail a gate)."""
    pct = 100 * fraction
    return f"{pct:.2g}%" if 0 < pct < 0.1 else f"{pct:.1f}%"
