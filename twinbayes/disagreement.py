"""Quantified disagreement between twins, as a result in its own right.

For every scenario, time and quantity of interest (QoI), with twin weights
``w_k`` (e.g. stacking) and each twin's posterior predictive distribution of
the *true* trajectory (parameter uncertainty, no measurement error):

* **Variance decomposition** of the ensemble (mixture) by the law of total
  variance: ``Var = sum_k w_k Var_k  +  sum_k w_k (E_k - E)^2``, within-twin
  plus between-twin; the *between-twin share* is how much of the predictive
  uncertainty comes from not knowing which twin is right.
* **Distances** between the twins' predictive distributions: the
  Wasserstein-1 distance (in the quantity's own units), per pair of twins.
* **Decisions**: for each target, ``P(QoI meets target)`` under each twin and
  the ensemble, the best scenario under each, the ensemble weight of twins
  that would recommend another scenario than the ensemble, and the
  probability (given the Monte Carlo error) that the twins recommend
  different scenarios.

Every figure carries a Monte Carlo standard error from the delete-one-block
jackknife over contiguous blocks of MCMC draws (batch-means jackknife; e.g.
Flegal & Jones 2010, Ann Stat 38:1034-1070), which accounts for the
autocorrelation of the chains and applies to any smooth statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from .ensemble import predictive_draws
from .fit import Twin
from .qoi import Target, qoi_name
from .scenarios import Scenario

__all__ = ["Disagreement", "disagreement", "weighted_quantile"]

N_QUANTILES = 400


def weighted_quantile(samples: Sequence[np.ndarray], weights: Sequence[float], q: Sequence[float]) -> np.ndarray:
    """Quantiles of the mixture ``sum_k w_k * empirical(samples_k)`` along axis 0.

    Returns an array of shape ``(len(q),) + samples[0].shape[1:]``.
    """
    values = np.concatenate(samples, axis=0)
    rest = values.shape[1:]
    values = values.reshape(len(values), -1)
    w = np.concatenate([np.full(len(s), wk / len(s)) for s, wk in zip(samples, weights)])
    order = np.argsort(values, axis=0)
    sorted_values = np.take_along_axis(values, order, axis=0)
    cum = np.cumsum(w[order], axis=0)
    cum /= cum[-1]
    idx = np.stack([np.argmax(cum >= level, axis=0) for level in q])  # first point reaching each level
    return np.take_along_axis(sorted_values, idx, axis=0).reshape((len(q),) + rest)


def _w1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between two samples along axis 0 (quantile coupling)."""
    u = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
    return np.abs(np.quantile(a, u, axis=0) - np.quantile(b, u, axis=0)).mean(axis=0)


def _decompose(samples: list[np.ndarray], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    means = np.array([s.mean(axis=0) for s in samples])
    var = np.array([s.var(axis=0) for s in samples])
    w = w.reshape((-1,) + (1,) * (means.ndim - 1))
    grand = (w * means).sum(axis=0)
    return (w * var).sum(axis=0), (w * (means - grand) ** 2).sum(axis=0)


def _share(samples, w):
    within, between = _decompose(samples, w)
    total = within + between
    return np.divide(between, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def _jackknife(stat, samples: list[np.ndarray], blocks: list[np.ndarray], n_blocks: int):
    """Statistic on all draws and its delete-one-block jackknife standard error."""
    full = stat(samples)
    reps = np.array([stat([s[b != j] for s, b in zip(samples, blocks)]) for j in range(n_blocks)])
    se = np.sqrt((n_blocks - 1) / n_blocks * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
    return np.asarray(full), se


@dataclass
class Disagreement:
    """Disagreement between twins (see the module docstring).

    Attributes
    ----------
    data : xarray.Dataset
        Coordinates ``source`` (twins and ``"ensemble"``), ``scenario``,
        ``time``, ``qoi``, ``target``, ``pair``.  Variables:
        ``traj_q05/q50/q95`` (source, scenario, time);
        ``traj_between_share`` and ``..._mcse``, ``traj_within_var``,
        ``traj_between_var`` (scenario, time); ``traj_w1`` (pair, scenario, time);
        ``qoi_mean``, ``qoi_q05``, ``qoi_q95`` (source, scenario, qoi);
        ``qoi_between_share``/``_mcse`` (scenario, qoi); ``qoi_w1``/``_mcse``
        (pair, scenario, qoi); ``p_meets``/``_mcse`` (source, scenario, target);
        ``best_scenario`` (source, target); ``p_recommend_differently`` and
        ``weight_against_ensemble`` (target).
    """

    data: xr.Dataset

    def decision_table(self, target: str | None = None) -> str:
        """Scenario x source table of P(meets target) +- MCSE, with the best scenario of each source."""
        d = self.data
        targets = [target] if target else list(d.target.values)
        lines = []
        for tg in targets:
            lines.append(f"P({tg})   [+- Monte Carlo SE]")
            head = f"{'scenario':<28}" + "".join(f"{str(s):>24}" for s in d.source.values)
            lines.append(head)
            for sc in d.scenario.values:
                cells = "".join(
                    f"{float(d.p_meets.sel(source=s, scenario=sc, target=tg)):>15.3f} +- {float(d.p_meets_mcse.sel(source=s, scenario=sc, target=tg)):.3f}"
                    for s in d.source.values
                )
                lines.append(f"{str(sc):<28}{cells}")
            lines.append(f"{'best scenario':<28}" + "".join(f"{str(d.best_scenario.sel(source=s, target=tg).values):>24}" for s in d.source.values))
            lines.append(
                f"weight of twins recommending another scenario than the ensemble: {float(d.weight_against_ensemble.sel(target=tg)):.2f}; "
                f"P(twins recommend different scenarios | MC error): {float(d.p_recommend_differently.sel(target=tg)):.2f}"
            )
        return "\n".join(lines)

    def share_table(self) -> str:
        """Between-twin share of the predictive variance per scenario and QoI (+- MCSE)."""
        d = self.data
        lines = [f"{'scenario':<28} {'qoi':<34} {'between-twin share':>20}"]
        for sc in d.scenario.values:
            for q in d.qoi.values:
                v = float(d.qoi_between_share.sel(scenario=sc, qoi=q))
                e = float(d.qoi_between_share_mcse.sel(scenario=sc, qoi=q))
                lines.append(f"{str(sc):<28} {str(q):<34} {v:>12.3f} +- {e:.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.share_table() + "\n\n" + self.decision_table()


def disagreement(
    twins: Sequence[Twin],
    weights: Mapping[str, float],
    scenarios: Sequence[Scenario],
    times: np.ndarray,
    *,
    qois: Sequence = (),
    targets: Sequence[Target] = (),
    observable: str | None = None,
    n_blocks: int = 20,
    seed: int = 0,
) -> Disagreement:
    """Simulate scenarios under every twin and quantify how the twins disagree.

    Parameters
    ----------
    twins : sequence of Twin
    weights : mapping twin name -> weight
        Ensemble weights (e.g. ``Comparison.weights``); they must sum to 1.
        Twins with weight 0 are shown but do not enter the ensemble.
    scenarios : sequence of Scenario
    times : array
        Time grid (spec time unit); QoI windows and evaluation times are added.
    qois : sequence of QoI
        Quantities of interest (see :mod:`twinbayes.qoi`).
    targets : sequence of Target
        Decision criteria; their QoIs are added to ``qois``.
    observable : str, optional
        Default: the twins' first observable.
    n_blocks : int
        Jackknife blocks of contiguous draws per twin (a multiple of the chains keeps blocks within chains).
    seed : int
        Seeds the Monte Carlo draws of the recommendation-disagreement probability.
    """
    twins = list(twins)
    names = [t.name for t in twins]
    if len(set(names)) != len(names):
        raise ValueError("twins must have distinct names")
    w = np.array([float(weights.get(n, 0.0)) for n in names])
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"weights must be >= 0 and sum to 1, got {dict(zip(names, w))}")
    if not scenarios:
        raise ValueError("no scenarios given")
    qois = list(qois) + [t.qoi for t in targets if t.qoi not in list(qois)]
    grid = np.unique(np.concatenate([np.asarray(times, float), [x for q in qois for x in q.required_times()]]))
    active = np.flatnonzero(w > 0)

    # trajectories: traj[s][k] has shape (draws_k, time)
    traj = [[predictive_draws(t, grid, observable=observable, doses=sc.to_doses(t.spec), mean=True).values for t in twins] for sc in scenarios]
    blocks = [np.arange(len(traj[0][k])) * n_blocks // len(traj[0][k]) for k in range(len(twins))]
    wa = w[active] / w[active].sum()
    sources = names + ["ensemble"]
    pairs = [(a, b) for i, a in enumerate(range(len(twins))) for b in range(i + 1, len(twins))]
    pair_names = [f"{names[a]} | {names[b]}" for a, b in pairs]
    qnames = [qoi_name(q) for q in qois]
    S, T, Q, G, P = len(scenarios), len(grid), len(qois), len(targets), len(pairs)

    out = {
        "traj_q05": np.zeros((len(sources), S, T)), "traj_q50": np.zeros((len(sources), S, T)), "traj_q95": np.zeros((len(sources), S, T)),
        "traj_within_var": np.zeros((S, T)), "traj_between_var": np.zeros((S, T)),
        "traj_between_share": np.zeros((S, T)), "traj_between_share_mcse": np.zeros((S, T)),
        "traj_w1": np.zeros((P, S, T)),
        "qoi_mean": np.zeros((len(sources), S, Q)), "qoi_q05": np.zeros((len(sources), S, Q)), "qoi_q95": np.zeros((len(sources), S, Q)),
        "qoi_between_share": np.zeros((S, Q)), "qoi_between_share_mcse": np.zeros((S, Q)),
        "qoi_w1": np.zeros((P, S, Q)), "qoi_w1_mcse": np.zeros((P, S, Q)),
        "p_meets": np.zeros((len(sources), S, G)), "p_meets_mcse": np.zeros((len(sources), S, G)),
    }
    for s in range(S):
        ys = traj[s]
        act = [ys[k] for k in active]
        act_blocks = [blocks[k] for k in active]
        for k, y in enumerate(ys):
            out["traj_q05"][k, s], out["traj_q50"][k, s], out["traj_q95"][k, s] = np.quantile(y, [0.05, 0.5, 0.95], axis=0)
        out["traj_q05"][-1, s], out["traj_q50"][-1, s], out["traj_q95"][-1, s] = weighted_quantile(act, wa, [0.05, 0.5, 0.95])
        out["traj_within_var"][s], out["traj_between_var"][s] = _decompose(act, wa)
        out["traj_between_share"][s], out["traj_between_share_mcse"][s] = _jackknife(lambda xs: _share(xs, wa), act, act_blocks, n_blocks)
        for p, (a, b) in enumerate(pairs):
            out["traj_w1"][p, s] = _w1(ys[a], ys[b])
        # QoIs: values[k] has shape (draws_k, Q)
        values = [np.stack([q(grid, y) for q in qois], axis=1) if Q else np.zeros((len(y), 0)) for y in ys]
        for k, v in enumerate(values):
            out["qoi_mean"][k, s] = v.mean(axis=0)
            out["qoi_q05"][k, s], out["qoi_q95"][k, s] = np.quantile(v, [0.05, 0.95], axis=0) if Q else (0, 0)
        act_v = [values[k] for k in active]
        if Q:
            out["qoi_mean"][-1, s] = sum(wk * v.mean(axis=0) for wk, v in zip(wa, act_v))
            out["qoi_q05"][-1, s], out["qoi_q95"][-1, s] = weighted_quantile(act_v, wa, [0.05, 0.95])
            out["qoi_between_share"][s], out["qoi_between_share_mcse"][s] = _jackknife(lambda xs: _share(xs, wa), act_v, act_blocks, n_blocks)
            for p, (a, b) in enumerate(pairs):
                out["qoi_w1"][p, s], out["qoi_w1_mcse"][p, s] = _jackknife(lambda xs: _w1(xs[0], xs[1]), [values[a], values[b]], [blocks[a], blocks[b]], n_blocks)
        for g, tg in enumerate(targets):
            j = qois.index(tg.qoi)
            hits = [tg.meets(v[:, j]).astype(float) for v in values]
            for k, h in enumerate(hits):
                out["p_meets"][k, s, g], out["p_meets_mcse"][k, s, g] = _jackknife(lambda xs: xs[0].mean(), [h], [blocks[k]], n_blocks)
            out["p_meets"][-1, s, g], out["p_meets_mcse"][-1, s, g] = _jackknife(
                lambda xs: sum(wk * x.mean() for wk, x in zip(wa, xs)), [hits[k] for k in active], act_blocks, n_blocks
            )

    scen_names = [sc.name for sc in scenarios]
    best = np.array([[scen_names[int(np.argmax(out["p_meets"][k, :, g]))] for g in range(G)] for k in range(len(sources))]).reshape(len(sources), G)
    against = np.array([sum(w[k] for k in active if best[k, g] != best[-1, g]) for g in range(G)])
    rng = np.random.default_rng(seed)
    p_diff = np.zeros(G)
    for g in range(G):
        sim = rng.normal(out["p_meets"][active, :, g], out["p_meets_mcse"][active, :, g], size=(4000, len(active), S))
        choice = sim.argmax(axis=2)
        p_diff[g] = np.mean(np.any(choice != choice[:, :1], axis=1))

    def var(dims, value):
        return (dims, value)

    ds = xr.Dataset(
        {
            **{k: var(("source", "scenario", "time"), out[k]) for k in ("traj_q05", "traj_q50", "traj_q95")},
            **{k: var(("scenario", "time"), out[k]) for k in ("traj_within_var", "traj_between_var", "traj_between_share", "traj_between_share_mcse")},
            "traj_w1": var(("pair", "scenario", "time"), out["traj_w1"]),
            **{k: var(("source", "scenario", "qoi"), out[k]) for k in ("qoi_mean", "qoi_q05", "qoi_q95")},
            **{k: var(("scenario", "qoi"), out[k]) for k in ("qoi_between_share", "qoi_between_share_mcse")},
            **{k: var(("pair", "scenario", "qoi"), out[k]) for k in ("qoi_w1", "qoi_w1_mcse")},
            **{k: var(("source", "scenario", "target"), out[k]) for k in ("p_meets", "p_meets_mcse")},
            "best_scenario": var(("source", "target"), best),
            "weight_against_ensemble": var(("target",), against),
            "p_recommend_differently": var(("target",), p_diff),
            "weight": var(("source",), np.append(w, 1.0)),
        },
        coords={"source": sources, "scenario": scen_names, "time": grid, "qoi": qnames, "target": [t.name for t in targets], "pair": pair_names},
        attrs={"observable": observable or next(iter(twins[0].design.times)), "time_unit": twins[0].spec.time_unit, "n_blocks": n_blocks},
    )
    return Disagreement(ds)
