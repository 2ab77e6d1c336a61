"""Flags a comparison should raise: near-duplicate twins and selection-induced bias."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ..fitting.twin import Twin

__all__ = ["duplicate_notes", "selection_bias_note"]


def duplicate_notes(twins: list[Twin], names: list[str], tol: float, seed: int) -> list[str]:
    """Flag pairs of twins whose posterior predictive distributions at the observed times coincide.

    Pointwise elpd values are too noisy for this (PSIS error); instead the
    predictive means are compared in units of the predictive standard
    deviation: ``max_i |m_a,i - m_b,i| / sd_i < tol``.
    """
    from ..fitting.predictive import predictive_draws

    pred = [predictive_draws(t, n_draws=2000, seed=seed).values for t in twins]
    notes = []
    for a in range(len(twins)):
        for b in range(a + 1, len(twins)):
            sd = np.sqrt(0.5 * (pred[a].var(axis=0) + pred[b].var(axis=0)))
            gap = float(np.max(np.abs(pred[a].mean(axis=0) - pred[b].mean(axis=0)) / sd))
            if twins[a].spec.sha256 == twins[b].spec.sha256:
                notes.append(
                    f"{names[a]} and {names[b]} are the same spec (identical text): their weights split arbitrarily"
                )
            elif gap < tol:
                notes.append(
                    f"{names[a]} and {names[b]} are near-duplicates: their predictive means differ by at most "
                    f"{gap:.3f} predictive SD at the observed times; the data cannot tell them apart and their "
                    "weights split arbitrarily"
                )
    return notes


def selection_bias_note(elpd_i: np.ndarray, names: list[str]) -> str | None:
    """Order-statistic check for selection-induced bias (McLatchie & Vehtari 2024, Stat Comput 34:156)."""
    k = elpd_i.shape[1]
    if k <= 11:  # as in ArviZ: too few candidates for a stable estimate
        return None
    order = np.argsort(-elpd_i.sum(axis=0))
    base = order[k // 2]
    diffs = (elpd_i - elpd_i[:, [base]]).sum(
        axis=0
    )  # the baseline's own 0 included, as in the paper's code
    trunc = diffs[diffs >= np.median(diffs)]
    sd = np.sqrt(np.mean(trunc**2))
    if sd == 0 or not np.isfinite(sd):
        return "all twins predict equally well"
    if diffs.max() <= norm.ppf(1 - 1 / (2 * (k - 1)), scale=sd):
        return (
            f"with {k} twins the best elpd difference is within what chance alone gives (order-statistic check, "
            "McLatchie & Vehtari 2024): do not select a single twin; average them"
        )
    return None
