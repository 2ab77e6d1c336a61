"""Calibration checks of one twin: LOO-PIT values and a simultaneous uniformity test.

If a twin's predictive distributions are calibrated, the leave-one-out
probability integral transform values ``PIT_i = P(y~_i <= y_i | y_-i)`` are
uniform on (0, 1) (Gelfand, Dey & Chang 1992; computed by PSIS weights in
ArviZ).  Uniformity is tested with the simultaneous confidence band for the
empirical CDF of Säilynoja, Bürkner & Vehtari (2022), "Graphical test for
discrete uniformity and its applications in goodness-of-fit evaluation and
multiple sample comparison", Stat Comput 32:32: the band is adjusted by
simulation so that a uniform sample stays entirely inside it with
probability ``1 - alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from .twin import Twin

__all__ = ["loo_pit", "PitTest", "pit_uniformity_test"]


def loo_pit(twin: Twin) -> np.ndarray:
    """LOO-PIT values of all the twin's observations (observables concatenated)."""
    import arviz_stats as azs

    pit = azs.loo_pit(twin.idata, var_names=list(twin.design.times))
    return np.concatenate(
        [np.asarray(pit[name].values, float).ravel() for name in twin.design.times]
    )


@dataclass(frozen=True)
class PitTest:
    """Result of the simultaneous ECDF uniformity test.

    Attributes
    ----------
    p_value : float
        Probability, under uniformity, of an ECDF at least as far outside as observed.
    calibrated : bool
        Whether the ECDF stays inside the simultaneous ``1 - alpha`` band.
    grid : ndarray
        Evaluation points z.
    ecdf : ndarray
        Empirical CDF of the PIT values at ``grid``.
    lower, upper : ndarray
        The simultaneous band for the ECDF.
    """

    p_value: float
    calibrated: bool
    grid: np.ndarray
    ecdf: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _min_tail_prob(pit_sorted_counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Smallest two-sided binomial tail probability of the ECDF counts over the grid."""
    lo = binom.cdf(pit_sorted_counts, n, z)
    hi = binom.sf(pit_sorted_counts - 1, n, z)
    return np.minimum(1.0, 2 * np.minimum(lo, hi)).min(axis=-1)


def pit_uniformity_test(
    pit: np.ndarray, alpha: float = 0.05, n_sim: int = 2000, seed: int = 0
) -> PitTest:
    """Simultaneous test that PIT values are uniform (Säilynoja et al. 2022).

    Parameters
    ----------
    pit : ndarray
        PIT values in [0, 1].
    alpha : float
        Level of the simultaneous band.
    n_sim : int
        Uniform samples simulated to adjust the band.
    seed : int
    """
    pit = np.asarray(pit, float)
    if pit.ndim != 1 or len(pit) == 0 or np.any((pit < 0) | (pit > 1)):
        raise ValueError("PIT values must be a non-empty 1-d array in [0, 1]")
    n = len(pit)
    grid = np.linspace(0.0, 1.0, max(50, 2 * n) + 1)[1:-1]
    counts = (pit[:, None] <= grid[None, :]).sum(axis=0)
    sims = np.random.default_rng(seed).uniform(size=(n_sim, n))
    sim_counts = (sims[:, :, None] <= grid[None, None, :]).sum(axis=1)
    sim_min = _min_tail_prob(sim_counts, n, grid)
    gamma = float(np.quantile(sim_min, alpha))
    observed = float(_min_tail_prob(counts, n, grid))
    lower = binom.ppf(gamma / 2, n, grid) / n
    upper = binom.ppf(1 - gamma / 2, n, grid) / n
    return PitTest(
        p_value=float(np.mean(sim_min <= observed)),
        calibrated=observed > gamma,
        grid=grid,
        ecdf=counts / n,
        lower=lower,
        upper=upper,
    )
