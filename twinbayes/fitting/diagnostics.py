"""Convergence diagnostics and the gate that everything downstream respects.

The defaults follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for
assessing convergence of MCMC", Bayesian Analysis 16(2):667-718: rank-normalised
split R-hat below 1.01 and bulk and tail ESS above 100 per chain (400 for four
chains); and Betancourt (2017), "A conceptual introduction to Hamiltonian Monte
Carlo" (arXiv:1701.02434), for divergences, tree-depth saturation and the energy
Bayesian fraction of missing information (E-BFMI, sec. 6.1; Betancourt 2016,
"Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte Carlo",
arXiv:1604.00695): per chain

.. math::

    \\widehat{\\mathrm{BFMI}} = \\frac{\\sum_{n=2}^{N} (E_n - E_{n-1})^2}{\\sum_{n=1}^{N} (E_n - \\bar E)^2},

and a chain below 0.3 explores the energy levels too slowly for its draws to be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

__all__ = [
    "Gate",
    "Diagnostics",
    "check_convergence",
    "diagnose",
    "ebfmi_per_chain",
    "attempts_disagree",
    "settled_chains",
    "sampler_flags",
]


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
    ebfmi_min : float
        Smallest acceptable E-BFMI of any chain (Betancourt 2016: below 0.3 is a warning sign).
    rhat_attempts_max : float
        Largest acceptable R-hat over the settled chains of *every* attempt of a fit that the
        ladder escalated (:func:`attempts_disagree`): above it the attempts found different
        modes, and the fit is reported as multimodal, not converged.
    """

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    max_divergent: int = 0
    max_treedepth_fraction: float = 0.0
    ebfmi_min: float = 0.3
    rhat_attempts_max: float = 1.05


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
    ebfmi : numpy.ndarray
        E-BFMI per chain (empty where the sampler gave no energy).
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
    ebfmi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __str__(self) -> str:
        status = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        bfmi = f", min E-BFMI {float(np.min(self.ebfmi)):.2f}" if np.size(self.ebfmi) else ""
        return (
            f"max R-hat {float(self.table.rhat.max()):.3f}, min bulk ESS {float(self.table.ess_bulk.min()):.0f}, "
            f"min tail ESS {float(self.table.ess_tail.min()):.0f}, {self.divergent} divergent, "
            f"{_percent(self.treedepth_fraction)} at max tree depth{bfmi} -> gate {status}"
        )

    def failed_on(self, kind: str) -> bool:
        """Whether a reason of the gate's verdict is of ``kind`` (``"R-hat"``, ``"ESS"``,
        ``"divergent"``, ``"tree depth"``, ``"E-BFMI"``, ``"multimodal"``)."""
        return any(_KINDS[kind](r) for r in self.reasons)


_KINDS = {
    "R-hat": lambda r: r.startswith("R-hat"),
    "ESS": lambda r: " ESS of " in r,
    "divergent": lambda r: "divergent transitions" in r,
    "tree depth": lambda r: "maximum tree depth" in r,
    "E-BFMI": lambda r: r.startswith("E-BFMI"),
    "multimodal": lambda r: r.startswith("multimodal"),
}


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
    draws = {n: np.asarray(post[n].values, float) for n in var_names}
    diverging, maxdepth, energy = sampler_flags(idata)
    return diagnose(draws, diverging, maxdepth, gate, energy)


def sampler_flags(idata) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Divergence and max-depth flags (chain, draw) and the energies (``None`` without them) of a
    NUTS run, whichever sampler (nutpie or PyMC) wrote its ``sample_stats``."""
    stats = idata["sample_stats"].to_dataset()
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    shape = (stats.sizes["chain"], stats.sizes["draw"])
    return (
        np.asarray(stats["diverging"].values, bool)
        if "diverging" in stats
        else np.zeros(shape, bool),
        np.asarray(stats[depth_var].values, bool) if depth_var else np.zeros(shape, bool),
        np.asarray(stats["energy"].values, float) if "energy" in stats else None,
    )


def diagnose(
    draws: dict[str, np.ndarray],
    diverging: np.ndarray,
    maxdepth: np.ndarray,
    gate: Gate = Gate(),
    energy: np.ndarray | None = None,
) -> Diagnostics:
    """The gate on kept draws given as arrays: ``draws[name]`` of shape (chain, draw).

    ``diverging`` and ``maxdepth`` flag each kept draw (any shape); ``energy``, of shape
    (chain, draw), gives each chain's E-BFMI.  R-hat is arviz-stats' rank-normalised split
    R-hat, ESS its bulk and tail ESS, E-BFMI its ``bfmi`` (the functions the DataTree
    accessors call, on the arrays directly).
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
    ebfmi = ebfmi_per_chain(energy) if energy is not None else np.zeros(0)
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
    low = np.flatnonzero(~(ebfmi >= gate.ebfmi_min))
    if low.size:
        reasons.append(
            f"E-BFMI of chain {', '.join(str(int(c)) for c in low)} is "
            f"{', '.join(f'{ebfmi[c]:.2f}' for c in low)} < {gate.ebfmi_min}"
        )
    return Diagnostics(table, divergent, treedepth, gate, not reasons, reasons, ebfmi)


def ebfmi_per_chain(energy: np.ndarray) -> np.ndarray:
    """E-BFMI of each chain from its Hamiltonian energies, shape (chain, draw) (arviz-stats' ``bfmi``)."""
    from arviz_stats.base import array_stats

    energy = np.asarray(energy, float)
    if energy.ndim != 2 or energy.shape[1] < 3:
        return np.zeros(0)
    return np.asarray(array_stats.bfmi(energy), float).reshape(-1)


def settled_chains(
    draws: dict[str, np.ndarray],
    diverging: np.ndarray,
    maxdepth: np.ndarray,
    rhat_max: float = 1.05,
) -> np.ndarray:
    """Which chains sampled one region steadily: evidence of where posterior mass lies.

    A chain is settled when none of its kept draws diverged or hit the maximum tree depth and,
    for every parameter, the R-hat of the chain alone (its two halves) is at most ``rhat_max``.
    A chain stuck where it started (warm-up too short to adapt the step size) or still drifting
    fails this; a chain in a mode of its own passes it.  ``draws[name]``, ``diverging`` and
    ``maxdepth`` have shape (chain, draw).
    """
    from arviz_stats.base import array_stats

    diverging = np.asarray(diverging, bool).reshape(len(next(iter(draws.values()))), -1)
    maxdepth = np.asarray(maxdepth, bool).reshape(diverging.shape[0], -1)
    ok = ~diverging.any(axis=1) & ~maxdepth.any(axis=1)
    for values in draws.values():
        half = values.shape[1] // 2
        for c in np.flatnonzero(ok):  # the chain's halves as two chains (each split once more)
            halves = values[c, values.shape[1] - 2 * half :].reshape(2, half)
            r = float(np.asarray(array_stats.rhat(halves, method="rank"), float))
            ok[c] = bool(np.isfinite(r) and r <= rhat_max)
    return ok


def attempts_disagree(
    attempts: list[tuple[dict[str, np.ndarray], np.ndarray]], gate: Gate = Gate()
) -> list[str]:
    """Reasons why the chains of several attempts of one fit found different modes (empty: none).

    Parameters
    ----------
    attempts : list of (dict, numpy.ndarray)
        Per attempt, ``draws[name]`` of shape (chain, draw), as :func:`diagnose` takes them, and
        which of its chains are settled (:func:`settled_chains`).
    gate : Gate
        ``rhat_attempts_max`` bounds the rank-normalised R-hat over the settled chains of every
        attempt, each cut to the last ``n`` draws (``n`` the shortest attempt's).

    Notes
    -----
    The ladder refits a twin that fails its gate; judging the last attempt alone would let a
    posterior with separated modes pass when its last chains happened to fall in one of them
    (Gelman & Rubin 1992 assume the chains start overdispersed; a new seed is a new draw of which
    mode the chains fall into).  The chains of every attempt are one sample of starting points,
    so R-hat over all of them sees what each attempt alone can miss.  Only settled chains count:
    a chain of an attempt whose step size never adapted stays where it started, which says
    nothing about modes.
    """
    from arviz_stats.base import array_stats

    kept = [(d, m) for d, m in attempts if np.any(m)]
    if len(attempts) < 2 or len(kept) < 2:
        return []
    n = min(next(iter(d.values())).shape[1] for d, _ in kept)
    reasons = []
    for name in kept[0][0]:
        chains = np.concatenate([d[name][m, -n:] for d, m in kept], axis=0)
        r = float(np.asarray(array_stats.rhat(chains, method="rank"), float))
        if not np.isfinite(r) or r > gate.rhat_attempts_max:
            reasons.append(
                f"multimodal: R-hat of {name} over the settled chains of all {len(attempts)} "
                f"attempts is {r:.3f} > {gate.rhat_attempts_max} (the attempts found different modes)"
            )
    return reasons


def _percent(fraction: float) -> str:
    """``fraction`` in percent, never a nonzero one shown as 0.0 % (0.04 % of draws fail a gate)."""
    pct = 100 * fraction
    return f"{pct:.2g}%" if 0 < pct < 0.1 else f"{pct:.1f}%"
