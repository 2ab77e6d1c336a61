"""Figures: posterior predictive checks, LOO-PIT calibration, averaged predictions, scenarios and
disagreement, a results folder's history, SBC ranks and model-recovery confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..decisions.ensemble import average_predictive
from ..fitting.calibration import loo_pit, pit_uniformity_test
from ..fitting.mc_error import NOT_ESTIMABLE, SHORT, format_estimate
from ..fitting.predictive import predictive_draws
from ..fitting.twin import Twin

__all__ = [
    "plot_ppc",
    "plot_loo_pit",
    "plot_twin_checks",
    "plot_average",
    "plot_scenario_fans",
    "plot_disagreement_over_time",
    "plot_decision_table",
    "plot_history",
    "plot_sbc",
    "plot_recovery",
]


def _finish(fig, path: str | Path | None):
    """Lay out ``fig``; save it to ``path`` (PNG, 110 dpi) and close it when a path is given."""
    fig.set_dpi(110)  # lay out at the resolution it is saved at: text is measured once, not twice
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def _grid(twin: Twin, observable: str, until: float | None = None) -> np.ndarray:
    t = twin.design.times[observable]
    end = until or float(t.max()) * 1.05
    for kt, _ in twin.design.inputs.values():  # forcing inputs are not extrapolated
        end = min(end, float(kt.max()))
    return np.linspace(0.0, end, 400 if twin.design.inputs else 200)


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
    draws = predictive_draws(
        twin, _grid(twin, observable), observable=observable, n_draws=1000, seed=seed
    )
    _fan(ax, draws, "C0", "posterior predictive median")
    ax.plot(
        twin.design.times[observable], twin.design.values[observable], "ko", ms=4, label="observed"
    )
    for name, t, y in twin.excluded:
        if name == observable:
            ax.plot(t, y, "x", color="0.4", ms=6, label="left out")
    unit = twin.spec.observations[observable].unit
    ax.set(
        xlabel=f"time ({twin.spec.time_unit})",
        ylabel=f"{observable} ({unit})",
        title=f"{twin.name}: posterior predictive (50/90 %)",
    )
    ax.legend(fontsize=7)
    return ax


def plot_loo_pit(twin: Twin, ax=None):
    """ECDF of the LOO-PIT values minus the uniform CDF, with the simultaneous 95 % band."""
    ax = ax or plt.gca()
    test = pit_uniformity_test(loo_pit(twin))
    z = test.grid
    ax.fill_between(
        z, test.lower - z, test.upper - z, color="0.85", step="mid", label="simultaneous 95 % band"
    )
    ax.step(z, test.ecdf - z, where="mid", color="C3", label="LOO-PIT ECDF - uniform")
    ax.axhline(0, color="0.5", lw=0.8)
    verdict = "calibrated" if test.calibrated else "NOT calibrated"
    ax.set(
        xlabel="PIT", ylabel="ECDF difference", title=f"LOO-PIT: {verdict} (p = {test.p_value:.2f})"
    )
    ax.legend(fontsize=7)
    return ax


def plot_twin_checks(twin: Twin, path: str | Path | None = None):
    """PPC and LOO-PIT side by side; saved as PNG when ``path`` is given."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_ppc(twin, axes[0])
    plot_loo_pit(twin, axes[1])
    return _finish(fig, path)


def plot_average(
    twins: list[Twin],
    weights: dict[str, float],
    path: str | Path | None = None,
    until: float | None = None,
    seed: int = 0,
):
    """Each twin's predictive median and 90 % band, and the weighted ensemble's."""
    observable = next(iter(twins[0].design.times))
    t = _grid(twins[0], observable, until)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, tw in enumerate(twins):
        d = predictive_draws(tw, t, observable=observable, n_draws=1000, seed=seed)
        q = np.quantile(d.values, [0.05, 0.5, 0.95], axis=0)
        ax.plot(
            t, q[1], color=f"C{i + 1}", lw=1, label=f"{tw.name} (w = {weights.get(tw.name, 0):.2f})"
        )
        ax.plot(t, q[0], color=f"C{i + 1}", lw=0.6, ls="--")
        ax.plot(t, q[2], color=f"C{i + 1}", lw=0.6, ls="--")
    ens = average_predictive(twins, weights, t, observable=observable, seed=seed)["ensemble"]
    _fan(ax, ens, "C0", "ensemble (stacking)")
    ax.plot(
        twins[0].design.times[observable],
        twins[0].design.values[observable],
        "ko",
        ms=4,
        label="observed",
    )
    unit = twins[0].spec.observations[observable].unit
    ax.set(
        xlabel=f"time ({twins[0].spec.time_unit})",
        ylabel=f"{observable} ({unit})",
        title=f"patient {twins[0].patient.label}: twins and their average",
    )
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_scenario_fans(
    result, path: str | Path | None = None, band: tuple[float, float] | None = None
):
    """Forecast fans (5-95 %) of every twin and the ensemble, one panel per scenario.

    ``result`` is a :class:`~twinbayes.decisions.twin_disagreement.Disagreement`; ``band``
    draws a target range (e.g. a therapeutic window) as a grey strip.
    """
    d = result.data
    n = d.sizes["scenario"]
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.2), sharey=True, squeeze=False)
    t = d.time.values
    for ax, sc in zip(axes[0], d.scenario.values):
        if band:
            ax.axhspan(*band, color="0.9", zorder=0, label="target range")
        for i, src in enumerate(d.source.values):
            is_ens = src == "ensemble"
            color = "k" if is_ens else f"C{i}"
            sel = dict(source=src, scenario=sc)
            if is_ens:
                ax.fill_between(
                    t,
                    d.traj_q05.sel(sel),
                    d.traj_q95.sel(sel),
                    color="tab:purple",
                    alpha=0.2,
                    lw=0,
                    label="ensemble 5-95 %",
                )
            else:
                ax.plot(t, d.traj_q05.sel(sel), color=color, lw=0.6, ls="--")
                ax.plot(t, d.traj_q95.sel(sel), color=color, lw=0.6, ls="--")
            w = float(d.weight.sel(source=src))
            ax.plot(
                t,
                d.traj_q50.sel(sel),
                color=color,
                lw=2 if is_ens else 1.2,
                label=f"{src}" + ("" if is_ens else f" (w = {w:.2f})"),
            )
        ax.set(title=str(sc), xlabel=f"time ({d.attrs['time_unit']})")
    axes[0][0].set_ylabel(f"{d.attrs['observable']} (median, 5-95 %)")
    axes[0][0].legend(fontsize=7)
    return _finish(fig, path)


def plot_disagreement_over_time(result, path: str | Path | None = None):
    """Between-twin share of the predictive variance over time (+- 2 MCSE), and pairwise W1 distances."""
    d = result.data
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    t = d.time.values
    for i, sc in enumerate(d.scenario.values):
        share = d.traj_between_share.sel(scenario=sc)
        err = d.traj_between_share_mcse.sel(scenario=sc)
        axes[0].fill_between(t, share - 2 * err, share + 2 * err, color=f"C{i}", alpha=0.25, lw=0)
        axes[0].plot(t, share, color=f"C{i}", label=f"{sc} (+- 2 MCSE)")
        if (
            "traj_between_share_q05" in d
            and np.isfinite(d.traj_between_share_q05.sel(scenario=sc)).any()
        ):
            for v in ("traj_between_share_q05", "traj_between_share_q95"):
                axes[0].plot(t, d[v].sel(scenario=sc), color=f"C{i}", ls="--", lw=0.8)
        if "traj_between_share_equal" in d:
            axes[0].plot(
                t, d.traj_between_share_equal.sel(scenario=sc), color=f"C{i}", ls=":", lw=1.0
            )
        for j, pair in enumerate(d.pair.values):
            axes[1].plot(
                t,
                d.traj_w1.sel(scenario=sc, pair=pair),
                color=f"C{i}",
                ls=["-", "--", ":", "-."][j % 4],
                label=f"{sc}: {pair}",
            )
    title = "which twin is right: share of predictive variance"
    if d.attrs.get("n_ensemble", 2) < 2:
        title += "\nundefined: fewer than two twins in the ensemble"
    if d.attrs.get("excluded"):
        title += f"\nexcluded (failed the gate): {d.attrs['excluded']}"
    if d.attrs.get("zero_weight"):
        title += f"\nweight 0: {d.attrs['zero_weight']}"
    axes[0].set(
        xlabel=f"time ({d.attrs['time_unit']})",
        ylabel="between-twin share of variance",
        ylim=(0, 1),
        title=title,
    )
    axes[0].text(
        0.01,
        0.98,
        "dashed: range over weight draws (5-95 %, with the estimate); dotted: equal weights",
        transform=axes[0].transAxes,
        fontsize=7,
        va="top",
    )
    axes[1].set(
        xlabel=f"time ({d.attrs['time_unit']})",
        ylabel=f"Wasserstein-1 ({d.attrs['observable']})",
        title="distance between twins' predictions",
    )
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    return _finish(fig, path)


def plot_decision_table(result, target: str | None = None, path: str | Path | None = None):
    """Scenario x source heat map of P(meets target) with its Monte Carlo SE; best scenario boxed."""
    d = result.data
    target = target or str(d.target.values[0])
    p = d.p_meets.sel(target=target).transpose("scenario", "source")
    e = d.p_meets_mcse.sel(target=target).transpose("scenario", "source")
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * d.sizes["source"], 1.2 + 0.7 * d.sizes["scenario"]))
    ax.imshow(p.values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, sc in enumerate(p.scenario.values):
        for j, src in enumerate(p.source.values):
            best = str(d.best_scenario.sel(source=src, target=target).values) == str(sc)
            ax.text(
                j,
                i,
                format_estimate(
                    float(p[i, j]), float(e[i, j]), 3, (0.0, 1.0), pm="±", words=f"MCSE {SHORT}"
                )
                .replace(" ±", "\n±")
                .replace(f" (MCSE {SHORT})", f"\nMCSE {SHORT}"),
                ha="center",
                va="center",
                color="w" if p[i, j] < 0.6 else "k",
                fontweight="bold" if best else "normal",
                fontsize=8,
            )
            if best:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(
        range(p.sizes["source"]), [str(s) for s in p.source.values], rotation=20, fontsize=8
    )
    ax.set_yticks(range(p.sizes["scenario"]), [str(s) for s in p.scenario.values], fontsize=8)
    ax.set_title(
        f"P({target}) ± MC SE ({SHORT}: {NOT_ESTIMABLE}); red: best scenario per source", fontsize=9
    )
    return _finish(fig, path)


def plot_history(entries: list[dict], path: str | Path | None = None):
    """The twins over time as data accrue: stacking weights, elpd per observation, between-twin share.

    One point per run of a results folder (:func:`~twinbayes.run.updates.update_results`),
    at the time of its last observation.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    t = [e["last_time"] for e in entries]
    twins = list(dict.fromkeys(n for e in entries for n in e["twins"]))
    for i, name in enumerate(twins):
        rows = [e["twins"].get(name, {}) for e in entries]
        weight = [r.get("stacking", np.nan) for r in rows]
        per_obs = [r.get("elpd", np.nan) / e["n_obs"] for r, e in zip(rows, entries)]
        axes[0].plot(t, weight, "o-", color=f"C{i}", label=name)
        axes[1].plot(t, per_obs, "o-", color=f"C{i}", label=name)
    scenarios = list(dict.fromkeys(s for e in entries for s in e.get("between_share", {})))
    for sc in scenarios:
        axes[2].plot(
            t, [e.get("between_share", {}).get(sc, np.nan) for e in entries], "o-", label=sc
        )
    unit = entries[-1]["time_unit"]
    axes[0].set(
        xlabel=f"last observation ({unit})", ylabel="stacking weight", ylim=(0, 1), title="weights"
    )
    axes[1].set(
        xlabel=f"last observation ({unit})",
        ylabel="elpd per observation",
        title="out-of-sample fit",
    )
    axes[2].set(
        xlabel=f"last observation ({unit})",
        ylabel="between-twin share (mean over time)",
        ylim=(0, 1),
        title="disagreement between twins",
    )
    axes[0].legend(fontsize=7)
    if scenarios:
        axes[2].legend(fontsize=7)
    return _finish(fig, path)


def plot_sbc(result, path: str | Path | None = None):
    """SBC ranks per parameter: ECDF of the rank PIT values minus the uniform CDF, with the
    simultaneous band of the uniformity test (Säilynoja, Bürkner & Vehtari 2022)."""
    tests = result.tests
    fig, axes = plt.subplots(1, len(tests), figsize=(3.2 * len(tests), 3), squeeze=False)
    for ax, (name, t) in zip(axes[0], tests.items()):
        ax.fill_between(t.grid, t.lower - t.grid, t.upper - t.grid, color="0.85", lw=0)
        ax.plot(t.grid, t.ecdf - t.grid, color="C0" if t.calibrated else "C3")
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set(title=f"{name}  (p = {t.p_value:.2f})", xlabel="rank / (L + 1)")
    axes[0][0].set_ylabel("ECDF difference")
    fig.suptitle(
        f"SBC: {result.ranks.sizes['sim']} simulations, L = {result.n_ranks}; grey: "
        f"{1 - result.alpha / len(tests):.4g} simultaneous band per parameter",
        fontsize=9,
    )
    return _finish(fig, path)


def plot_recovery(result, path: str | Path | None = None):
    """Confusion matrices of a model-recovery study: top-ranked counts and mean stacking weights."""
    names = [str(n) for n in result.fitted.values]
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(names), 0.9 * len(names) + 1.8))
    for ax, var, title in (
        (axes[0], "top", "ranked first (share of simulations)"),
        (axes[1], "stacking", "mean stacking weight"),
    ):
        values = result[var].values / (result.attrs["n_sims"] if var == "top" else 1)
        ax.imshow(values, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.6 else "black"
            )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set(xlabel="fitted", ylabel="true (simulated from)", title=title)
    return _finish(fig, path)
