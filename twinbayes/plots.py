"""Figures: posterior predictive checks, LOO-PIT calibration, averaged predictions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .calibration import loo_pit, pit_uniformity_test  # noqa: E402
from .ensemble import average_predictive, predictive_draws  # noqa: E402
from .fit import Twin  # noqa: E402

__all__ = ["plot_ppc", "plot_loo_pit", "plot_twin_checks", "plot_average"]


def _grid(twin: Twin, observable: str, until: float | None = None) -> np.ndarray:
    t = twin.design.times[observable]
    return np.linspace(0.0, until or float(t.max()) * 1.05, 200)


def _fan(ax, draws, color, label):
    t = draws["time"].values
    q = np.quantile(draws.values, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(t, q[0], q[4], color=color, alpha=0.15, lw=0)
    ax.fill_between(t, q[1], q[3], color=color, alpha=0.3, lw=0)
    ax.plot(t, q[2], color=color, lw=1.5, label=label)


def plot_ppc(twin: Twin, ax=None, observable: str | None = None, seed: int = 0):
    """Observed data over the posterior predictive 50 % and 90 % bands and the median."""
    ax = ax or plt.gca()
    observable = observable or next(iter(twin.design.times))
    draws = predictive_draws(twin, _grid(twin, observable), observable=observable, n_draws=1000, seed=seed)
    _fan(ax, draws, "C0", "posterior predictive median")
    ax.plot(twin.design.times[observable], twin.design.values[observable], "ko", ms=4, label="observed")
    for name, t, y in twin.excluded:
        if name == observable:
            ax.plot(t, y, "x", color="0.4", ms=6, label="left out (pre-dose)")
    unit = twin.spec.observations[observable].unit
    ax.set(xlabel=f"time ({twin.spec.time_unit})", ylabel=f"{observable} ({unit})", title=f"{twin.name}: posterior predictive (50/90 %)")
    ax.legend(fontsize=7)
    return ax


def plot_loo_pit(twin: Twin, ax=None):
    """ECDF of the LOO-PIT values minus the uniform CDF, with the simultaneous 95 % band."""
    ax = ax or plt.gca()
    test = pit_uniformity_test(loo_pit(twin))
    z = test.grid
    ax.fill_between(z, test.lower - z, test.upper - z, color="0.85", step="mid", label="simultaneous 95 % band")
    ax.step(z, test.ecdf - z, where="mid", color="C3", label="LOO-PIT ECDF - uniform")
    ax.axhline(0, color="0.5", lw=0.8)
    verdict = "calibrated" if test.calibrated else "NOT calibrated"
    ax.set(xlabel="PIT", ylabel="ECDF difference", title=f"LOO-PIT: {verdict} (p = {test.p_value:.2f})")
    ax.legend(fontsize=7)
    return ax


def plot_twin_checks(twin: Twin, path: str | Path | None = None):
    """PPC and LOO-PIT side by side; saved as PNG when ``path`` is given."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_ppc(twin, axes[0])
    plot_loo_pit(twin, axes[1])
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_average(twins: list[Twin], weights: dict[str, float], path: str | Path | None = None, until: float | None = None, seed: int = 0):
    """Each twin's predictive median and 90 % band, and the weighted ensemble's."""
    observable = next(iter(twins[0].design.times))
    t = _grid(twins[0], observable, until)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, tw in enumerate(twins):
        d = predictive_draws(tw, t, observable=observable, n_draws=1000, seed=seed)
        q = np.quantile(d.values, [0.05, 0.5, 0.95], axis=0)
        ax.plot(t, q[1], color=f"C{i + 1}", lw=1, label=f"{tw.name} (w = {weights.get(tw.name, 0):.2f})")
        ax.plot(t, q[0], color=f"C{i + 1}", lw=0.6, ls="--")
        ax.plot(t, q[2], color=f"C{i + 1}", lw=0.6, ls="--")
    ens = average_predictive(twins, weights, t, observable=observable, seed=seed)["ensemble"]
    _fan(ax, ens, "C0", "ensemble (stacking)")
    ax.plot(twins[0].design.times[observable], twins[0].design.values[observable], "ko", ms=4, label="observed")
    unit = twins[0].spec.observations[observable].unit
    ax.set(xlabel=f"time ({twins[0].spec.time_unit})", ylabel=f"{observable} ({unit})", title=f"patient {twins[0].patient.id}: twins and their average")
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
