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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .ensemble import predictive_draws
from .fit import Twin
from .qoi import Target, qoi_name
from .scenarios import Scenario

__all__ = ["Disagreement", "disagreement", "weighted_quantile"]

N_QUANTILES = 400


def weighted_quantile(
    samples: Sequence[np.ndarray], weights: Sequence[float], q: Sequence[float]
) -> np.ndarray:
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
    idx = np.stack(
        [np.argmax(cum >= level, axis=0) for level in q]
    )  # first point reaching each level
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
            lines.append(
                f"{'best scenario':<28}"
                + "".join(
                    f"{str(d.best_scenario.sel(source=s, target=tg).values):>24}"
                    for s in d.source.values
                )
            )
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
    w = _check_weights(twins, weights)
    if not scenarios:
        raise ValueError("no scenarios given")
    qois = list(qois) + [t.qoi for t in targets if t.qoi not in list(qois)]
    grid = np.unique(
        np.concatenate([np.asarray(times, float), [x for q in qois for x in q.required_times()]])
    )
    ens = _Ensemble.of(w, twins, n_blocks)
    per_scenario = []
    for sc in scenarios:
        ys = [
            predictive_draws(
                t, grid, observable=observable, doses=sc.to_doses(t.spec), mean=True
            ).values
            for t in twins
        ]
        values = [
            np.stack([q(grid, y) for q in qois], axis=1) if qois else np.zeros((len(y), 0))
            for y in ys
        ]
        per_scenario.append(
            {
                **_trajectory_stats(ys, ens),
                **_qoi_stats(values, ens),
                **_target_stats(values, qois, targets, ens),
            }
        )
    names = [t.name for t in twins]
    data = {
        k: (_DIMS[k], np.stack([r[k] for r in per_scenario], axis=_DIMS[k].index("scenario")))
        for k in _DIMS
    }
    decisions = _decisions(
        data["p_meets"][1],
        data["p_meets_mcse"][1],
        [sc.name for sc in scenarios],
        w,
        ens.active,
        seed,
    )
    ds = xr.Dataset(
        {**data, **decisions, "weight": (("source",), np.append(w, 1.0))},
        coords={
            "source": names + ["ensemble"],
            "scenario": [sc.name for sc in scenarios],
            "time": grid,
            "qoi": [qoi_name(q) for q in qois],
            "target": [t.name for t in targets],
            "pair": [f"{names[a]} | {names[b]}" for a, b in ens.pairs],
        },
        attrs={
            "observable": observable or next(iter(twins[0].design.times)),
            "time_unit": twins[0].spec.time_unit,
            "n_blocks": n_blocks,
        },
    )
    return Disagreement(ds)


_DIMS = {
    **{k: ("source", "scenario", "time") for k in ("traj_q05", "traj_q50", "traj_q95")},
    **{
        k: ("scenario", "time")
        for k in (
            "traj_within_var",
            "traj_between_var",
            "traj_between_share",
            "traj_between_share_mcse",
        )
    },
    "traj_w1": ("pair", "scenario", "time"),
    **{k: ("source", "scenario", "qoi") for k in ("qoi_mean", "qoi_q05", "qoi_q95")},
    **{k: ("scenario", "qoi") for k in ("qoi_between_share", "qoi_between_share_mcse")},
    **{k: ("pair", "scenario", "qoi") for k in ("qoi_w1", "qoi_w1_mcse")},
    **{k: ("source", "scenario", "target") for k in ("p_meets", "p_meets_mcse")},
}
"""Dimensions of every per-scenario result variable."""


def _check_weights(twins: list[Twin], weights: Mapping[str, float]) -> np.ndarray:
    """The weights in twin order, checked to be a distribution over distinctly named twins."""
    names = [t.name for t in twins]
    if len(set(names)) != len(names):
        raise ValueError("twins must have distinct names")
    w = np.array([float(weights.get(n, 0.0)) for n in names])
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"weights must be >= 0 and sum to 1, got {dict(zip(names, w))}")
    return w


@dataclass(frozen=True)
class _Ensemble:
    """The twins in the ensemble (``active``, renormalised weights ``wa``), jackknife blocks and twin pairs."""

    active: np.ndarray
    wa: np.ndarray
    blocks: list[np.ndarray]
    n_blocks: int
    pairs: list[tuple[int, int]]

    @classmethod
    def of(cls, w: np.ndarray, twins: list[Twin], n_blocks: int) -> _Ensemble:
        active = np.flatnonzero(w > 0)
        sizes = [
            twin.idata["posterior"].sizes["chain"] * twin.idata["posterior"].sizes["draw"]
            for twin in twins
        ]
        blocks = [np.arange(n) * n_blocks // n for n in sizes]
        pairs = [(a, b) for a in range(len(twins)) for b in range(a + 1, len(twins))]
        return cls(active, w[active] / w[active].sum(), blocks, n_blocks, pairs)

    def jackknife(self, stat, samples: list[np.ndarray], members) -> tuple[np.ndarray, np.ndarray]:
        """``stat`` of the samples of twins ``members`` and its jackknife standard error."""
        return _jackknife(stat, samples, [self.blocks[k] for k in members], self.n_blocks)


def _trajectory_stats(ys: list[np.ndarray], ens: _Ensemble) -> dict[str, np.ndarray]:
    """Bands per source, the variance decomposition and share, and W1 per pair, over time."""
    act = [ys[k] for k in ens.active]
    bands = np.stack(
        [np.quantile(y, [0.05, 0.5, 0.95], axis=0) for y in ys]
        + [weighted_quantile(act, ens.wa, [0.05, 0.5, 0.95])]
    )
    within, between = _decompose(act, ens.wa)
    share, share_se = ens.jackknife(lambda xs: _share(xs, ens.wa), act, ens.active)
    w1 = np.array([_w1(ys[a], ys[b]) for a, b in ens.pairs]).reshape(len(ens.pairs), ys[0].shape[1])
    return {
        "traj_q05": bands[:, 0],
        "traj_q50": bands[:, 1],
        "traj_q95": bands[:, 2],
        "traj_within_var": within,
        "traj_between_var": between,
        "traj_between_share": share,
        "traj_between_share_mcse": share_se,
        "traj_w1": w1,
    }


def _qoi_stats(values: list[np.ndarray], ens: _Ensemble) -> dict[str, np.ndarray]:
    """Mean and 90 % interval per source, between-twin share and W1 per pair, per QoI (``values[k]``: draws x QoI)."""
    n_q = values[0].shape[1]
    act = [values[k] for k in ens.active]
    if n_q == 0:
        empty = np.zeros((len(values) + 1, 0))
        return {
            "qoi_mean": empty,
            "qoi_q05": empty,
            "qoi_q95": empty,
            "qoi_between_share": np.zeros(0),
            "qoi_between_share_mcse": np.zeros(0),
            "qoi_w1": np.zeros((len(ens.pairs), 0)),
            "qoi_w1_mcse": np.zeros((len(ens.pairs), 0)),
        }
    mean = np.stack(
        [v.mean(axis=0) for v in values] + [sum(wk * v.mean(axis=0) for wk, v in zip(ens.wa, act))]
    )
    q = np.stack(
        [np.quantile(v, [0.05, 0.95], axis=0) for v in values]
        + [weighted_quantile(act, ens.wa, [0.05, 0.95])]
    )
    share, share_se = ens.jackknife(lambda xs: _share(xs, ens.wa), act, ens.active)
    w1 = [
        ens.jackknife(lambda xs: _w1(xs[0], xs[1]), [values[a], values[b]], (a, b))
        for a, b in ens.pairs
    ]
    return {
        "qoi_mean": mean,
        "qoi_q05": q[:, 0],
        "qoi_q95": q[:, 1],
        "qoi_between_share": share,
        "qoi_between_share_mcse": share_se,
        "qoi_w1": np.array([x[0] for x in w1]).reshape(len(ens.pairs), n_q),
        "qoi_w1_mcse": np.array([x[1] for x in w1]).reshape(len(ens.pairs), n_q),
    }


def _target_stats(
    values: list[np.ndarray], qois: list, targets: Sequence[Target], ens: _Ensemble
) -> dict[str, np.ndarray]:
    """P(QoI meets target) and its Monte Carlo SE per source (the ensemble last), per target."""
    p = np.zeros((len(values) + 1, len(targets)))
    se = np.zeros_like(p)
    for g, tg in enumerate(targets):
        j = qois.index(tg.qoi)
        hits = [tg.meets(v[:, j]).astype(float) for v in values]
        for k, h in enumerate(hits):
            p[k, g], se[k, g] = ens.jackknife(lambda xs: xs[0].mean(), [h], [k])
        p[-1, g], se[-1, g] = ens.jackknife(
            lambda xs: sum(wk * x.mean() for wk, x in zip(ens.wa, xs)),
            [hits[k] for k in ens.active],
            ens.active,
        )
    return {"p_meets": p, "p_meets_mcse": se}


def _decisions(p_meets, p_meets_mcse, scenario_names, w, active, seed) -> dict[str, tuple]:
    """Best scenario per source and target, the weight against the ensemble's choice, and P(twins disagree | MC error).

    ``p_meets`` and its MCSE have dimensions (source, scenario, target), the ensemble last.
    """
    n_sources, n_scenarios, n_targets = p_meets.shape
    best = np.array(
        [
            [scenario_names[int(np.argmax(p_meets[k, :, g]))] for g in range(n_targets)]
            for k in range(n_sources)
        ]
    ).reshape(n_sources, n_targets)
    against = np.array(
        [sum(w[k] for k in active if best[k, g] != best[-1, g]) for g in range(n_targets)]
    )
    rng = np.random.default_rng(seed)
    p_diff = np.zeros(n_targets)
    for g in range(n_targets):
        sim = rng.normal(
            p_meets[active, :, g], p_meets_mcse[active, :, g], size=(4000, len(active), n_scenarios)
        )
        choice = sim.argmax(axis=2)
        p_diff[g] = np.mean(np.any(choice != choice[:, :1], axis=1))
    return {
        "best_scenario": (("source", "target"), best),
        "weight_against_ensemble": (("target",), against),
        "p_recommend_differently": (("target",), p_diff),
    }
