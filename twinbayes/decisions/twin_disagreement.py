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

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import xarray as xr

from ..comparison.mixture_variance import between_share, decompose, share
from ..fitting.mc_error import NOT_ESTIMABLE, SHORT, format_estimate
from ..fitting.predictive import predictive_draws
from ..fitting.twin import Twin
from ..spec.qoi import Target, qoi_name
from ..spec.scenarios import Scenario
from .forward import FORWARD_MIN_POINTS, WIDEN_LEVEL, Discrepancy, forward_discrepancy

__all__ = [
    "Disagreement",
    "Simulated",
    "disagreement",
    "simulate",
    "simulate_twin",
    "twin_simulation",
    "TwinScenarios",
    "Forward",
    "weighted_quantile",
    "between_share",
]


def weighted_quantile(
    samples: Sequence[np.ndarray], weights: Sequence[float], q: Sequence[float]
) -> np.ndarray:
    """Quantiles of the mixture ``sum_k w_k * empirical(samples_k)`` along axis 0.

    Returns an array of shape ``(len(q),) + samples[0].shape[1:]``: at each level ``q``, the
    smallest draw ``v`` whose mixture distribution function reaches it,
    ``sum_k w_k #{draws_k <= v} / n_k >= q sum_k w_k``.
    """
    rest = samples[0].shape[1:]
    lanes = [np.sort(np.reshape(s, (len(s), -1)).T, axis=1) for s in samples]
    return _lane_quantile(lanes, weights, q).reshape((len(q),) + rest)


_LEVEL_TOL = 1e-12
"""Tolerance of a quantile level against the mixture's distribution function (rounding)."""


def _lane_quantile(lanes: Sequence[np.ndarray], weights: Sequence[float], q) -> np.ndarray:
    """:func:`weighted_quantile` of samples laid out as ``(lane, draw)`` rows sorted along the
    draws: ``(len(q), lanes)``.

    The mixture's distribution function at a value is a weighted sum of each sample's rank of it,
    found by bisection in every row at once; the quantile is the smallest draw of a sample of
    positive weight at which it reaches the level (a bisection over that sample's ranks; a
    zero-weight sample never raises it first).  No pooled sort: ``O(rows log^2 n)`` work
    instead of ``O(rows n log n)``.  A level is reached within :data:`_LEVEL_TOL` (the rounding
    of the weighted ranks), so a level met exactly, such as 0.05 of 100 equally weighted draws,
    gives the 5th draw as in exact arithmetic (Hyndman & Fan 1996's definition 1, NumPy's
    ``inverted_cdf``).
    """
    rows = np.arange(lanes[0].shape[0])
    drawn = [(x, float(w)) for x, w in zip(lanes, weights) if w > 0]
    total = sum(float(w) for w in weights)

    def rank(x: np.ndarray, v: np.ndarray) -> np.ndarray:  # per row, draws of x at or below v
        return _first_rank(lambda r: x[rows, r] > v, x.shape[1], len(rows))

    def mass(v: np.ndarray) -> np.ndarray:  # total x the mixture's distribution function at v
        return sum(w * (rank(x, v) / x.shape[1]) for x, w in drawn)

    out = np.full((len(q), len(rows)), np.inf)
    for i, level in enumerate(q):
        for x, _ in drawn:
            n = x.shape[1]
            t = (level - _LEVEL_TOL) * total
            r = _first_rank(lambda r, x=x, t=t: mass(x[rows, r]) >= t, n, len(rows))
            at = np.where(r < n, x[rows, np.minimum(r, n - 1)], np.inf)
            out[i] = np.minimum(out[i], at)
    return out


def _first_rank(reached: Callable[[np.ndarray], np.ndarray], n: int, rows: int) -> np.ndarray:
    """Per row, the smallest rank ``r`` in ``0..n`` with ``reached(r)`` true (``n`` if none);
    ``reached`` is monotone in ``r`` and is asked about ranks ``< n`` only."""
    lo, hi = np.zeros(rows, dtype=np.intp), np.full(rows, n, dtype=np.intp)
    while (open_ := lo < hi).any():
        mid = (lo + hi) // 2
        yes = reached(np.minimum(mid, n - 1))
        hi = np.where(open_ & yes, mid, hi)
        lo = np.where(open_ & ~yes, mid + 1, lo)
    return lo


def _sorted_lanes(ys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each ``(draw, time)`` array as ``(time, draw)`` rows sorted along the draws, two at a time
    (NumPy's sort releases the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda y: np.sort(np.ascontiguousarray(y.T), axis=1), ys))


def _w1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the empirical distributions of two samples along axis 0.

    .. math:: W_1 = \\int_0^1 |F_a^{-1}(u) - F_b^{-1}(u)| \\, du

    computed exactly from the sorted samples (the quantile coupling is optimal in one
    dimension; Villani 2009, Optimal Transport, Remark 2.19): for equal sizes the mean
    absolute difference of the order statistics, otherwise the integral over the merged
    breakpoints ``i / n_a`` and ``j / n_b`` of the two step quantile functions.  Agrees with
    :func:`scipy.stats.wasserstein_distance` (tested).
    """
    return _w1_sorted(np.sort(a, axis=0), np.sort(b, axis=0))


def _w1_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_w1` of samples already sorted along axis 0."""
    n_a, n_b = len(a), len(b)
    if n_a == n_b:
        return np.abs(a - b).mean(axis=0)
    u = np.union1d(np.arange(1, n_a + 1) / n_a, np.arange(1, n_b + 1) / n_b)
    du = np.diff(u, prepend=0.0)
    mid = u - du / 2  # strictly inside one step of each quantile function
    ia = np.minimum((mid * n_a).astype(int), n_a - 1)
    ib = np.minimum((mid * n_b).astype(int), n_b - 1)
    return np.tensordot(du, np.abs(a[ia] - b[ib]), axes=(0, 0))


def _draws_first(lane: np.ndarray) -> np.ndarray:
    """A ``(time, draw)`` array as a contiguous ``(draw, time)`` one (sums then run in draw order)."""
    return np.ascontiguousarray(lane.T)


def _jackknife_se(reps: np.ndarray, n_blocks: int) -> np.ndarray:
    """Delete-one-block jackknife standard error from the replicates (first axis)."""
    return np.sqrt((n_blocks - 1) / n_blocks * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))


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
        ``qoi_between_share``/``_mcse`` (scenario, qoi); ``qoi_w1``/``_mcse``/``_null``
        (pair, scenario, qoi; ``_null`` is the distance Monte Carlo error alone would give,
        :func:`w1_null`); ``p_meets``/``_mcse`` (source, scenario, target);
        ``best_scenario`` (source, target); ``p_recommend_differently`` and
        ``weight_against_ensemble`` (target).  Weight uncertainty and
        sensitivity: ``traj_/qoi_between_share_q05/_q95`` (5-95 % of weight
        draws, widened to include the value at the point weights: :func:`weight_range`) and ``_equal`` (converged twins at equal weight);
        ``p_meets_ensemble_q05/_q95``, ``p_meets_equal`` (scenario, target);
        ``p_ensemble_choice_changes`` (target).  Shared draws:
        ``p_meets_diff``/``_mcse`` (source, scenario, target), the difference to
        the first scenario.  Forward widening (:mod:`twinbayes.decisions.forward`):
        ``p_meets_plain``/``_mcse`` (source, scenario, target), the plain posteriors'
        probabilities.  Attributes ``excluded``, ``n_ensemble``,
        ``weight_draws``, ``equal_weight_twins``, ``forward`` (JSON: each twin's
        discrepancy, :meth:`~twinbayes.decisions.forward.Discrepancy.as_attrs`; empty when off).
    """

    data: xr.Dataset

    def _forward(self) -> dict | None:
        """The ``forward`` attribute as written by :func:`disagreement` (``None``: widening off)."""
        raw = self.data.attrs.get("forward", "")
        return json.loads(raw) if raw else None

    def forward_record(self) -> dict[str, dict] | None:
        """Each twin's forward discrepancy as recorded (:meth:`~twinbayes.decisions.forward.Discrepancy.as_attrs`);
        ``None`` when widening was off."""
        record = self._forward()
        return None if record is None else record["twins"]

    def forward_note(self) -> str:
        """One line per widened twin, or why nothing was widened (empty when widening is off)."""
        record = self._forward()
        if record is None:
            return ""
        found, level = record["twins"], record.get("level", WIDEN_LEVEL)
        unit = self.data.attrs.get("time_unit", "")
        lines = [
            f"forward widening: {name}'s forecasts of this patient's later levels missed by more "
            f"than it expected (likelihood ratio {r.get('lr') or 0:.3g}); its predictions after "
            f"t = {r['since']:g} {unit} are widened by log SD sqrt({r['rate']:.3g} x time past it)"
            for name, r in found.items()
            if r["rate"]
        ]
        if lines:
            return "\n".join(lines)
        checked = [r["longest_checked"] for r in found.values()]
        if not any(checked):
            return "forward widening: too few levels to check any twin's forecasts; not widened"
        return (
            "forward widening: no twin's forecasts of this patient's later levels (up to "
            f"{max(checked):.3g} {unit} ahead) missed clearly more than it expected (the "
            f"likelihood-ratio test at {level:g}); not widened"
        )

    def exclusion_note(self) -> str:
        """What the ensemble leaves out, to print next to every share (empty when nothing is)."""
        d = self.data
        notes = []
        if d.attrs.get("excluded"):
            notes.append(
                f"excluded from the ensemble (failed the convergence gate): {d.attrs['excluded']}"
            )
        if d.attrs.get("zero_weight"):
            notes.append(f"weight 0 from the comparison: {d.attrs['zero_weight']}")
        if d.attrs.get("n_ensemble", 2) < 2:
            notes.append(
                "fewer than two twins in the ensemble: the between-twin share is undefined (n/a), not 0"
            )
        return "; ".join(notes)

    def decision_table(self, target: str | None = None) -> str:
        """Scenario x source table of P(meets target) +- MCSE, with the best scenario of each source."""
        d = self.data
        targets = [target] if target else list(d.target.values)
        lines = []
        for tg in targets:
            lines.append(f"P({tg})   [+- Monte Carlo SE]")
            lines.append(f"{'scenario':<28}" + "".join(f"{str(s):>24}" for s in d.source.values))
            for sc in d.scenario.values:
                cells = "".join(f"{_probability_cell(d, s, sc, tg):>24}" for s in d.source.values)
                lines.append(f"{str(sc):<28}{cells}" + self._ensemble_spread(sc, tg))
            best = "".join(
                f"{str(d.best_scenario.sel(source=s, target=tg).values):>24}"
                for s in d.source.values
            )
            lines.append(f"{'best scenario':<28}{best}")
            changes = float(d.p_ensemble_choice_changes.sel(target=tg))
            lines.append(
                f"weight of twins recommending another scenario than the ensemble: "
                f"{float(d.weight_against_ensemble.sel(target=tg)):.2f}; "
                f"P(twins recommend different scenarios | MC error): {float(d.p_recommend_differently.sel(target=tg)):.2f}"
                + (
                    ""
                    if np.isnan(changes)
                    else f"; share of weight draws changing the ensemble's choice: {changes:.2f}"
                )
            )
        note = self.exclusion_note()
        if any(f"({SHORT})" in line for line in lines):
            lines.append(
                f"{SHORT}: {NOT_ESTIMABLE} (every draw agreed, or the error is as large as P)"
            )
        return "\n".join(lines + ([f"note: {note}"] if note else []))

    def _ensemble_spread(self, sc, tg) -> str:
        d = self.data
        lo, hi = (
            float(d[v].sel(scenario=sc, target=tg))
            for v in ("p_meets_ensemble_q05", "p_meets_ensemble_q95")
        )
        eq = float(d.p_meets_equal.sel(scenario=sc, target=tg))
        spread = "" if np.isnan(lo) else f"   ensemble, range over weights {lo:.3f}-{hi:.3f}"
        return spread + ("" if np.isnan(eq) else f"; equal weights {eq:.3f}")

    def share_table(self) -> str:
        """Between-twin share of the predictive variance per scenario and QoI: +- MCSE, over weights, at equal weights."""
        d = self.data
        lines = [
            f"{'scenario':<28} {'qoi':<34} {'between-twin share':>38}  range over weights   equal weights"
        ]
        for sc in d.scenario.values:
            for q in d.qoi.values:
                v, e, lo, hi, eq = (
                    float(d[f"qoi_between_share{k}"].sel(scenario=sc, qoi=q))
                    for k in ("", "_mcse", "_q05", "_q95", "_equal")
                )
                share = format_estimate(v, e, 3, (0.0, 1.0))
                spread = "-" if np.isnan(lo) else f"{lo:.3f}-{hi:.3f}"
                equal = "n/a" if np.isnan(eq) else f"{eq:.3f}"
                lines.append(f"{str(sc):<28} {str(q):<34} {share:>38}  {spread:>18}   {equal:>13}")
        note = self.exclusion_note()
        return "\n".join(lines + ([f"note: {note}"] if note else []))

    def __str__(self) -> str:
        note = self.forward_note()
        return self.share_table() + "\n\n" + self.decision_table() + ("\n" + note if note else "")


def _probability_cell(d: xr.Dataset, source, scenario, target) -> str:
    """P(meets target) of one source and scenario with its MCSE (:func:`~twinbayes.fitting.mc_error.format_estimate`)."""
    at = dict(source=source, scenario=scenario, target=target)
    p, se = float(d.p_meets.sel(**at)), float(d.p_meets_mcse.sel(**at))
    return format_estimate(p, se, 3, (0.0, 1.0), words=SHORT)


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
    weight_draws: Mapping[str, np.ndarray] | None = None,
    simulated: Simulated | None = None,
    forward: Forward | None = None,
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
        Quantities of interest (see :mod:`twinbayes.spec.qoi`).
    targets : sequence of Target
        Decision criteria; their QoIs are added to ``qois``.
    observable : str, optional
        Default: the twins' first observable.
    n_blocks : int
        Jackknife blocks of contiguous draws per twin (a multiple of the chains keeps blocks within chains).
    seed : int
        Seeds the Monte Carlo draws of the recommendation-disagreement probability.
    weight_draws : mapping twin name -> array (B,), optional
        Draws from the uncertainty of ``weights`` (e.g. ``Comparison.weight_draws["stacking"]``,
        Bayesian-bootstrap replicates).  The between-twin shares and the ensemble's
        probabilities then carry 90 % intervals over them; a twin of weight 0 that some
        draws give weight takes part in those draws.
    simulated : Simulated, optional
        The scenarios already simulated under these twins (:func:`simulate` with these
        twins, scenarios, times, QoIs, targets and observable), e.g. while the comparison ran;
        default: simulated here.
    forward : Forward, optional
        Widen each twin's predictions past its last level by how wrong its forecasts of this
        patient's own levels were (:mod:`twinbayes.decisions.forward`); the plain posterior's
        probabilities stay in ``p_meets_plain``.  Default ``None``: the plain posterior.

    Notes
    -----
    With fewer than two twins of positive weight the between-twin share is
    undefined (it would be 0 by construction): it is NaN, and the result's
    ``excluded`` attribute names the twins left out.  ``..._equal`` variables
    repeat the share and the ensemble's probabilities with every converged twin
    at equal weight (a sensitivity line).  Monte Carlo errors of differences
    between scenarios (``p_meets_diff_mcse``) and the probability that the twins
    recommend different scenarios account for the posterior draws that the
    scenarios of one twin share (joint jackknife over the same blocks).
    """
    twins = list(twins)
    w = _check_weights(twins, weights)
    if simulated is None:
        simulated = simulate(
            twins,
            scenarios,
            times,
            qois=qois,
            targets=targets,
            observable=observable,
            forward=forward,
        )
    simulated.check(twins, scenarios, times, qois, targets, observable, forward)
    grid, qois, values = simulated.grid, simulated.qois, simulated.values
    ens = _Ensemble.of(w, twins, n_blocks, weight_draws)
    with ThreadPoolExecutor(max_workers=2) as pool:  # NumPy's sorts release the GIL
        per_scenario = list(
            pool.map(
                lambda sim: {**_trajectory_stats(sim[0], ens), **_qoi_stats(sim[1], ens)},
                zip(simulated.means, values),
            )
        )
    names = [t.name for t in twins]
    scenario_names = [sc.name for sc in scenarios]
    data = {
        k: (_DIMS[k], np.stack([r[k] for r in per_scenario], axis=_DIMS[k].index("scenario")))
        for k in _DIMS
    }
    target_data, reps = _target_stats(values, qois, targets, ens)
    decisions = _decisions(target_data, reps, scenario_names, w, ens, seed)
    ds = xr.Dataset(
        {
            **data,
            **target_data,
            **decisions,
            **_plain_target_stats(simulated, targets, ens),
            "weight": (("source",), np.append(w, 1.0)),
        },
        coords={
            "source": names + ["ensemble"],
            "scenario": scenario_names,
            "time": grid,
            "qoi": [qoi_name(q) for q in qois],
            "target": [t.name for t in targets],
            "pair": [f"{names[a]} | {names[b]}" for a, b in ens.pairs],
        },
        attrs={
            "observable": observable or next(iter(twins[0].design.times)),
            "time_unit": twins[0].spec.time_unit,
            "n_blocks": n_blocks,
            "n_ensemble": len(ens.active),
            "excluded": ", ".join(
                n for t, n, wk in zip(twins, names, w) if wk == 0 and not t.converged
            ),
            "zero_weight": ", ".join(
                n for t, n, wk in zip(twins, names, w) if wk == 0 and t.converged
            ),
            "weight_draws": 0 if ens.weight_draws is None else len(ens.weight_draws),
            "equal_weight_twins": ", ".join(names[k] for k in ens.equal),
            **_forward_attrs(simulated),
        },
    )
    return Disagreement(ds)


def _plain_target_stats(simulated: Simulated, targets, ens: _Ensemble) -> dict:
    """``p_meets_plain``/``_mcse``: the probabilities of the plain posterior, where widened."""
    if simulated.forward is None or not targets:
        return {}
    plain, _ = _target_stats(simulated.plain_values, list(simulated.qois), targets, ens)
    return {f"{k}_plain": plain[k] for k in ("p_meets", "p_meets_mcse")}


def _forward_attrs(simulated: Simulated) -> dict:
    """The widening's record: JSON of each twin's discrepancy (empty: plain posterior)."""
    if simulated.forward is None:
        return {"forward": ""}
    found = {d.twin: d.as_attrs() for d in simulated.discrepancies}
    record = {"min_points": simulated.forward.min_points, "level": simulated.forward.level}
    return {"forward": json.dumps({**record, "twins": found})}


class Simulated(NamedTuple):
    """Scenarios simulated under every twin: what :func:`disagreement` weights and summarises.

    Attributes
    ----------
    twins : tuple of str
        The twins' names, in the order of ``means`` and ``values``.
    scenarios : tuple of Scenario
        In the order of ``means`` and ``values``.
    observable : str or None
        As asked (``None``: the twins' first).
    times : numpy.ndarray
        The requested time grid.
    grid : numpy.ndarray
        ``times`` with the times the QoIs need.
    qois : tuple
        The QoIs, those of the targets included.
    means : list (scenario) of list (twin) of numpy.ndarray
        Predicted means ``(draw, grid time)``.
    values : list (scenario) of list (twin) of numpy.ndarray
        QoI values ``(draw, qoi)``.
    forward : Forward or None
        The forward widening applied (``None``: the plain posterior).
    plain_values : list (scenario) of list (twin) of numpy.ndarray
        QoI values of the plain posterior (``values`` itself without ``forward``).
    discrepancies : tuple of Discrepancy
        Each twin's forward discrepancy (empty without ``forward``).
    """

    twins: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    observable: str | None
    times: np.ndarray
    grid: np.ndarray
    qois: tuple
    means: list[list[np.ndarray]]
    values: list[list[np.ndarray]]
    forward: Forward | None = None
    plain_values: list[list[np.ndarray]] | None = None
    discrepancies: tuple[Discrepancy, ...] = ()

    def check(self, twins, scenarios, times, qois, targets, observable, forward=None) -> None:
        """Raise ``ValueError`` unless simulated with these arguments of :func:`simulate`."""
        asked = (
            tuple(t.name for t in twins),
            tuple(scenarios),
            _with_target_qois(qois, targets),
            observable,
            forward,
        )
        mine = (self.twins, self.scenarios, self.qois, self.observable, self.forward)
        if mine != asked or not (np.array_equal(self.times, np.asarray(times, float))):
            raise ValueError(
                f"simulated for twins {self.twins}, scenarios {[sc.name for sc in self.scenarios]}, "
                f"observable {self.observable!r}, forward widening {self.forward} and other "
                "doses, QoIs or times than asked; "
                "simulate with the same"
            )


def _with_target_qois(qois: Sequence, targets: Sequence[Target]) -> tuple:
    """The QoIs and those of the targets not among them."""
    return tuple(qois) + tuple(t.qoi for t in targets if t.qoi not in list(qois))


def simulate(
    twins: Sequence[Twin],
    scenarios: Sequence[Scenario],
    times: np.ndarray,
    *,
    qois: Sequence = (),
    targets: Sequence[Target] = (),
    observable: str | None = None,
    per_twin: Sequence[TwinScenarios] | None = None,
    forward: Forward | None = None,
) -> Simulated:
    """Every scenario under every twin: predicted means on ``times`` (and the times the QoIs
    need) and the QoI values, per posterior draw.  The part of :func:`disagreement` that needs
    no weights.

    ``forward``: widen each twin's predictions past the last level by its forward discrepancy
    (:func:`simulate_twin`; ``None``: the plain posterior).  ``per_twin``: each twin's :func:`simulate_twin` with these arguments, made already (e.g. in
    the background while later twins were fitted); default: simulated here, two twins at a time
    (NumPy releases the GIL in its large operations; each twin's values are the same bits).
    """
    twins = list(twins)
    if not scenarios:
        raise ValueError("no scenarios given")
    qois = _with_target_qois(qois, targets)
    times = np.asarray(times, float)
    grid = simulation_grid(times, qois)
    if per_twin is None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            per_twin = list(
                pool.map(
                    lambda t: simulate_twin(t, scenarios, grid, qois, observable, forward), twins
                )
            )
    means, values, plain = (
        [[getattr(p, part)[s] for p in per_twin] for s in range(len(scenarios))]
        for part in ("means", "values", "plain_values")
    )
    names = tuple(t.name for t in twins)
    found = tuple(p.discrepancy for p in per_twin if p.discrepancy is not None)
    return Simulated(
        names, tuple(scenarios), observable, times, grid, qois, means, values, forward, plain, found
    )


def twin_simulation(
    scenarios: Sequence[Scenario],
    times: np.ndarray,
    *,
    qois: Sequence = (),
    targets: Sequence[Target] = (),
    observable: str | None = None,
    forward: Forward | None = None,
) -> Callable[[Twin], TwinScenarios]:
    """:func:`simulate_twin` as :func:`simulate` calls it with these arguments: its ``per_twin``."""
    qois = _with_target_qois(qois, targets)
    grid = simulation_grid(np.asarray(times, float), qois)
    return partial(
        simulate_twin,
        scenarios=scenarios,
        grid=grid,
        qois=qois,
        observable=observable,
        forward=forward,
    )


def simulation_grid(times: np.ndarray, qois: Sequence) -> np.ndarray:
    """``times`` with the times ``qois`` need (:meth:`required_times`), sorted, no repeats."""
    return np.unique(np.concatenate([times, [x for q in qois for x in q.required_times()]]))


class TwinScenarios(NamedTuple):
    """One twin under every scenario: predicted means ``(draw, grid time)`` and QoI values
    ``(draw, qoi)``, one array per scenario; widened past the last level where ``discrepancy``
    is given (:mod:`twinbayes.decisions.forward`), with the plain posterior's QoI values in
    ``plain_values``."""

    means: list[np.ndarray]
    values: list[np.ndarray]
    plain_values: list[np.ndarray]
    discrepancy: Discrepancy | None = None


class Forward(NamedTuple):
    """Forward widening as :func:`simulate` applies it (:mod:`twinbayes.decisions.forward`).

    Attributes
    ----------
    min_points : int
        Levels the first leave-future-out forecast is made from.
    seed : int
        Seeds each twin's forecasts and its Brownian paths (with a hash of its name).
    level : float
        Nominal level of the test that widens a twin only where its forecasts missed by more
        than it said (:func:`~twinbayes.decisions.forward.widening_threshold`; 0.5: every positive
        fitted rate applied).
    """

    min_points: int = FORWARD_MIN_POINTS
    seed: int = 0
    level: float = WIDEN_LEVEL

    def rng(self, twin: Twin, scenario: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(twin.name.encode()), scenario])


def simulate_twin(
    twin: Twin,
    scenarios: Sequence[Scenario],
    grid: np.ndarray,
    qois: Sequence,
    observable: str | None,
    forward: Forward | None = None,
) -> TwinScenarios:
    """``twin``'s predicted means on ``grid`` (:func:`simulation_grid`) and its values of
    ``qois`` (targets' QoIs included) under each scenario: its part of :func:`simulate`.

    With ``forward``, the twin's forward discrepancy is fitted to its own leave-future-out
    forecasts and every trajectory is widened past the last level
    (:meth:`~twinbayes.decisions.forward.Discrepancy.widen`) before the QoIs are read from it."""
    plain = [
        predictive_draws(twin, grid, observable=observable, scenario=sc, mean=True).values
        for sc in scenarios
    ]
    plain_values = [_qoi_values(qois, grid, y) for y in plain]
    if forward is None:
        return TwinScenarios(plain, plain_values, plain_values)
    found = forward_discrepancy(
        twin, min_points=forward.min_points, seed=forward.seed, level=forward.level
    )
    means = [found.widen(grid, y, forward.rng(twin, i)) for i, y in enumerate(plain)]
    return TwinScenarios(means, [_qoi_values(qois, grid, y) for y in means], plain_values, found)


def _qoi_values(qois: Sequence, grid: np.ndarray, y: np.ndarray) -> np.ndarray:
    """QoI values ``(draw, qoi)`` of trajectories ``y`` ``(draw, time)`` on ``grid``."""
    return np.stack([q(grid, y) for q in qois], axis=1) if qois else np.zeros((len(y), 0))


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
    **{k: ("pair", "scenario", "qoi") for k in ("qoi_w1", "qoi_w1_mcse", "qoi_w1_null")},
    **{
        k: ("scenario", "time")
        for k in ("traj_between_share_q05", "traj_between_share_q95", "traj_between_share_equal")
    },
    **{
        k: ("scenario", "qoi")
        for k in ("qoi_between_share_q05", "qoi_between_share_q95", "qoi_between_share_equal")
    },
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


def _drawn_weights(
    twins: list[Twin], active: np.ndarray, weight_draws: Mapping[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The twins that weight draws give weight to (the active ones first) and the draws
    ``(B, len(drawn))``, each a distribution over those twins.

    Raises
    ------
    ValueError
        A twin of positive weight without draws, or a draw that gives no twin here any weight.
    """
    if weight_draws is None:
        return active, None
    missing = [twins[k].name for k in active if twins[k].name not in weight_draws]
    if missing:
        raise ValueError(f"weight_draws has no draws for twin(s) {missing} of positive weight")
    others = [
        k
        for k, t in enumerate(twins)
        if k not in active and np.any(np.asarray(weight_draws.get(t.name, 0.0), float) > 0)
    ]
    drawn = np.concatenate([active, np.array(others, dtype=int)]).astype(int)
    draws = np.stack([np.asarray(weight_draws[twins[k].name], float) for k in drawn], axis=1)
    total = draws.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(
            "a weight draw gives none of these twins any weight (draws of other twins' weights?)"
        )
    return drawn, draws / total


@dataclass(frozen=True)
class _Ensemble:
    """Who is in the ensemble and with what weights, jackknife blocks, twin pairs.

    ``active``: twins of positive weight, ``wa`` their renormalised weights,
    ``weight_draws`` (B, len(drawn)) draws of the weights of the twins ``drawn`` (or ``None``):
    the active ones and any other that some draw gives weight (a twin the point weights leave
    out may carry a replicate, even all of it),
    ``equal``: the converged twins, weighted equally in the sensitivity line.
    """

    w: np.ndarray
    active: np.ndarray
    wa: np.ndarray
    blocks: list[np.ndarray]
    n_blocks: int
    pairs: list[tuple[int, int]]
    weight_draws: np.ndarray | None
    drawn: np.ndarray
    equal: np.ndarray

    @classmethod
    def of(cls, w: np.ndarray, twins: list[Twin], n_blocks: int, weight_draws=None) -> _Ensemble:
        active = np.flatnonzero(w > 0)
        sizes = [
            t.idata["posterior"].sizes["chain"] * t.idata["posterior"].sizes["draw"] for t in twins
        ]
        blocks = [np.arange(n) * n_blocks // n for n in sizes]
        pairs = [(a, b) for a in range(len(twins)) for b in range(a + 1, len(twins))]
        drawn, draws = _drawn_weights(twins, active, weight_draws)
        equal = np.array([k for k, t in enumerate(twins) if t.converged], dtype=int)
        wa = w[active] / w[active].sum()
        return cls(w, active, wa, blocks, n_blocks, pairs, draws, drawn, equal)

    def share(self, samples: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Between-twin share at the weights (with MCSE), its range over weight draws (:func:`weight_range`), and at equal weights.

        ``samples[k]`` are twin k's draws (draws first).  NaN where fewer than
        two twins take part: the share is not defined there.
        """
        shape = samples[0].shape[1:]
        nan = np.full(shape, np.nan)
        out = dict.fromkeys(("share", "mcse", "q05", "q95", "equal"), nan)
        means = np.array([x.mean(axis=0) for x in samples])
        variances = np.array([x.var(axis=0) for x in samples])
        if len(self.equal) >= 2:
            out["equal"] = _share_of_moments(
                means[self.equal],
                variances[self.equal],
                np.full(len(self.equal), 1 / len(self.equal)),
            )
        if len(self.active) < 2:
            return out
        act = [samples[k] for k in self.active]
        out["share"] = share(act, self.wa)
        reps = _share_of_moments(
            *zip(
                *(
                    _moment_replicates(samples[k], self.blocks[k], self.n_blocks)
                    for k in self.active
                )
            ),
            self.wa,
        )
        out["mcse"] = _jackknife_se(reps, self.n_blocks)
        if self.weight_draws is not None:
            by_draw = _share_of_moments(means[self.drawn], variances[self.drawn], self.weight_draws)
            out["q05"], out["q95"] = weight_range(by_draw, out["share"])
        return out


def weight_range(by_draw: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The range of a quantity over weight draws, reported beside its value at the point weights.

    The 5 % and 95 % quantiles over the draws (first axis), widened to include ``point``.  The
    weight draws (Bayesian-bootstrap stacking, Yao et al. 2018, sec. 3.3) are not a posterior of
    the point weights: at small n they pile up at the simplex's corners, where a between-twin
    share is smallest, and their central 90 % can miss the point estimate (0.157 reported with
    0.000-0.159 before).  So this is a *sensitivity range*, not a credible interval: what the
    quantity would be under the weights the data support about as well, and never one that
    excludes the number it stands beside.
    """
    lo, hi = np.quantile(by_draw, [0.05, 0.95], axis=0)
    point = np.asarray(point, float)
    return np.fmin(lo, point), np.fmax(hi, point)


def _moment_replicates(
    x: np.ndarray, blocks: np.ndarray, n_blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Delete-one-block means and variances of ``x`` (draws first): each ``(n_blocks,) + x.shape[1:]``.

    From block sums of the draws centred at their mean (well conditioned), in one pass instead of
    ``n_blocks`` passes over the draws.  ``blocks`` must be sorted (contiguous blocks).
    """
    d = x - x.mean(axis=0)
    starts = np.searchsorted(blocks, np.arange(n_blocks))
    s1 = np.add.reduceat(d, starts, axis=0)
    s2 = np.add.reduceat(d * d, starts, axis=0)
    rest = (len(x) - np.bincount(blocks, minlength=n_blocks)).reshape((-1,) + (1,) * (x.ndim - 1))
    m1 = (s1.sum(axis=0) - s1) / rest
    return x.mean(axis=0) + m1, np.maximum((s2.sum(axis=0) - s2) / rest - m1**2, 0.0)


def _share_of_moments(means: np.ndarray, variances: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Between-twin share from per-twin means and variances (first axis: twins) for weights ``w`` ((K,) or (B, K))."""
    means, variances = np.asarray(means), np.asarray(variances)
    within = np.tensordot(w, variances, axes=(-1, 0))
    grand = np.tensordot(w, means, axes=(-1, 0))
    between = np.maximum(np.tensordot(w, means**2, axes=(-1, 0)) - grand**2, 0.0)
    total = within + between
    return np.divide(between, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def _trajectory_stats(ys: list[np.ndarray], ens: _Ensemble) -> dict[str, np.ndarray]:
    """Bands per source, the variance decomposition and the between-twin share, and W1 per pair, over time."""
    act = [ys[k] for k in ens.active]
    lanes = _sorted_lanes(ys)  # (time, draw), sorted once for the bands, the mixture and W1
    q = [0.05, 0.5, 0.95]
    mixture = _lane_quantile([lanes[k] for k in ens.active], ens.wa, q)
    bands = np.stack([np.quantile(x, q, axis=1) for x in lanes] + [mixture])
    within, between = decompose(act, ens.wa)
    share = ens.share(ys)
    w1 = np.array(
        [_w1_sorted(_draws_first(lanes[a]), _draws_first(lanes[b])) for a, b in ens.pairs]
    )
    w1 = w1.reshape(len(ens.pairs), ys[0].shape[1])
    return {
        "traj_q05": bands[:, 0],
        "traj_q50": bands[:, 1],
        "traj_q95": bands[:, 2],
        "traj_within_var": within,
        "traj_between_var": between,
        "traj_between_share": share["share"],
        "traj_between_share_mcse": share["mcse"],
        "traj_between_share_q05": share["q05"],
        "traj_between_share_q95": share["q95"],
        "traj_between_share_equal": share["equal"],
        "traj_w1": w1,
    }


def _qoi_stats(values: list[np.ndarray], ens: _Ensemble) -> dict[str, np.ndarray]:
    """Mean and 90 % interval per source, between-twin share and W1 per pair, per QoI (``values[k]``: draws x QoI)."""
    n_q, n_pairs = values[0].shape[1], len(ens.pairs)
    act = [values[k] for k in ens.active]
    if n_q == 0:
        empty = np.zeros((len(values) + 1, 0))
        shares = ("", "_mcse", "_q05", "_q95", "_equal")
        return {
            **dict.fromkeys(("qoi_mean", "qoi_q05", "qoi_q95"), empty),
            **{f"qoi_between_share{k}": np.zeros(0) for k in shares},
            **dict.fromkeys(("qoi_w1", "qoi_w1_mcse", "qoi_w1_null"), np.zeros((n_pairs, 0))),
        }
    mean = np.stack(
        [v.mean(axis=0) for v in values] + [sum(wk * v.mean(axis=0) for wk, v in zip(ens.wa, act))]
    )
    ranked = [
        _sort_with_blocks(v, b) for v, b in zip(values, ens.blocks)
    ]  # sorted once, used twice
    lanes = [np.ascontiguousarray(ranked[k][0].T) for k in ens.active]
    q = np.stack(
        [np.quantile(v, [0.05, 0.95], axis=0) for v in values]
        + [_lane_quantile(lanes, ens.wa, [0.05, 0.95])]
    )
    share = ens.share(values)
    w1 = [_w1_jackknife(ranked[a], ranked[b], ens.n_blocks) for a, b in ens.pairs]
    half = [_w1_between_halves(r, ens.n_blocks) for r in ranked]
    return {
        "qoi_mean": mean,
        "qoi_q05": q[:, 0],
        "qoi_q95": q[:, 1],
        "qoi_between_share": share["share"],
        "qoi_between_share_mcse": share["mcse"],
        "qoi_between_share_q05": share["q05"],
        "qoi_between_share_q95": share["q95"],
        "qoi_between_share_equal": share["equal"],
        "qoi_w1": np.array([x[0] for x in w1]).reshape(n_pairs, n_q),
        "qoi_w1_mcse": np.array([x[1] for x in w1]).reshape(n_pairs, n_q),
        "qoi_w1_null": np.array([w1_null(half[a], half[b]) for a, b in ens.pairs]).reshape(
            n_pairs, n_q
        ),
    }


def _w1_between_halves(ranked: tuple[np.ndarray, np.ndarray], n_blocks: int) -> np.ndarray:
    """W1 between two halves of one twin's draws, averaged over splits of its jackknife blocks.

    The blocks are contiguous runs of draws, so each half keeps the draws' autocorrelation; the
    splits put block ``j`` in half ``(j // m) % 2`` for ``m = 1, 2, 4, ...`` (fewer than
    ``n_blocks``), so no split follows one pattern of the chains alone.
    """
    x, blocks = ranked
    out = []
    m = 1
    while m < n_blocks:
        side = ((blocks // m) % 2).T  # (qoi, draws), in each QoI's sorted order
        if 0 < int((side[:1] == 0).sum()) < side.shape[1]:
            out.append(_w1_unequal_columns(x.T, side))
        m *= 2
    return np.mean(out, axis=0) if out else np.full(x.shape[1], np.nan)


def _w1_unequal_columns(x: np.ndarray, side: np.ndarray) -> np.ndarray:
    """W1 per row of ``x`` (sorted) between the draws with ``side == 0`` and those with ``side == 1``."""
    return np.array([_w1_sorted(row[s == 0], row[s == 1]) for row, s in zip(x, side)])


def w1_null(half_a: np.ndarray, half_b: np.ndarray) -> np.ndarray:
    """The W1 distance expected between two twins' draws if both came from one distribution.

    An empirical quantile function from ``N`` effective draws is off by about ``c / sqrt(N)``,
    so two samples of one distribution lie ``c sqrt(1/N_a + 1/N_b)`` apart in W1 although the
    twins agree (two identical N(0, 1) twins with AR(1) 0.9 draws read 0.108 apart).  Two halves
    of one twin's draws lie ``c_k sqrt(4 / N_k) = h_k`` apart, hence the baseline
    ``sqrt(h_a^2 + h_b^2) / 2``.  A distance well above it is a disagreement; one near it is
    what Monte Carlo error alone would give.
    """
    return 0.5 * np.sqrt(np.asarray(half_a) ** 2 + np.asarray(half_b) ** 2)


def _sort_with_blocks(x: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` sorted along its draws (axis 0), and the jackknife block of each sorted draw."""
    order = np.argsort(x, axis=0, kind="stable")
    return np.take_along_axis(x, order, axis=0), blocks[order]


def _without_block(ranked: tuple[np.ndarray, np.ndarray], j: int) -> np.ndarray:
    """The sorted draws outside block ``j``: still sorted, without sorting again."""
    x, blocks = ranked
    keep = (blocks != j).T
    return np.ascontiguousarray(x.T[keep].reshape(x.shape[1], -1).T)  # sums in the same order


def _w1_jackknife(a: tuple, b: tuple, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """W1 between two twins' draws (from :func:`_sort_with_blocks`) and its delete-one-block
    jackknife standard error, each replicate's draws still sorted (one sort per twin, not one per
    replicate; the same numbers as sorting each replicate's draws for :func:`_w1`)."""
    full = _w1_sorted(a[0], b[0])
    reps = np.array(
        [_w1_sorted(_without_block(a, j), _without_block(b, j)) for j in range(n_blocks)]
    )
    return full, _jackknife_se(reps, n_blocks)


def _block_replicates(h: np.ndarray, blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    """Delete-one-block means of ``h`` (draws first): shape ``(n_blocks,) + h.shape[1:]``."""
    total = h.sum(axis=0)
    out = np.empty((n_blocks,) + h.shape[1:])
    for j in range(n_blocks):
        inside = blocks == j
        out[j] = (total - h[inside].sum(axis=0)) / (len(h) - inside.sum())
    return out


def _jackknife_cov(reps: np.ndarray) -> np.ndarray:
    """Jackknife covariance over the last-but-one axis pairs: ``reps`` (n_blocks, ..., S) -> (..., S, S)."""
    n = reps.shape[0]
    dev = reps - reps.mean(axis=0)
    return (n - 1) / n * np.einsum("j...s,j...t->...st", dev, dev)


def _target_stats(
    values, qois: list, targets: Sequence[Target], ens: _Ensemble
) -> tuple[dict, np.ndarray]:
    """P(QoI meets target) per source, scenario and target, with Monte Carlo errors that know the draws are shared.

    ``values[s][k]`` are twin k's QoI draws under scenario s.  The scenarios of
    one twin use the same posterior draws, so their estimates are correlated:
    delete-one-block replicates are taken jointly over scenarios, giving the
    MCSE of each probability, of its difference to the first scenario
    (``p_meets_diff``), and the covariance used by :func:`_decisions`.
    Returns the variables and the replicates ``(n_blocks, source, scenario, target)``.
    """
    n_src, n_sc, n_tg = len(values[0]) + 1, len(values), len(targets)
    p = np.zeros((n_src, n_sc, n_tg))
    reps = np.zeros((ens.n_blocks, n_src, n_sc, n_tg))
    for g, tg in enumerate(targets):
        j = qois.index(tg.qoi)
        for k in range(n_src - 1):
            hits = np.stack(
                [tg.meets(values[s][k][:, j]).astype(float) for s in range(n_sc)], axis=1
            )
            p[k, :, g] = hits.mean(axis=0)
            reps[:, k, :, g] = _block_replicates(hits, ens.blocks[k], ens.n_blocks)
        p[-1, :, g] = sum(wk * p[k, :, g] for wk, k in zip(ens.wa, ens.active))
        reps[:, -1, :, g] = sum(wk * reps[:, k, :, g] for wk, k in zip(ens.wa, ens.active))
    n = ens.n_blocks
    se = np.sqrt((n - 1) / n * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
    diff_reps = reps - reps[:, :, :1, :]
    diff_se = np.sqrt((n - 1) / n * ((diff_reps - diff_reps.mean(axis=0)) ** 2).sum(axis=0))
    out = {
        "p_meets": (("source", "scenario", "target"), p),
        "p_meets_mcse": (("source", "scenario", "target"), se),
        "p_meets_diff": (("source", "scenario", "target"), p - p[:, :1, :]),
        "p_meets_diff_mcse": (("source", "scenario", "target"), diff_se),
        **_ensemble_over_weights(p, ens),
    }
    return out, reps


def _ensemble_over_weights(p: np.ndarray, ens: _Ensemble) -> dict[str, tuple]:
    """The ensemble's P(meets) over weight draws (:func:`weight_range`) and at equal weights over converged twins."""
    n_sc, n_tg = p.shape[1:]
    nan = np.full((n_sc, n_tg), np.nan)
    q05 = q95 = nan
    if ens.weight_draws is not None:
        by_draw = np.einsum("bk,kst->bst", ens.weight_draws, p[ens.drawn])
        q05, q95 = weight_range(by_draw, p[-1])
    equal = p[ens.equal].mean(axis=0) if len(ens.equal) else nan
    return {
        "p_meets_ensemble_q05": (("scenario", "target"), q05),
        "p_meets_ensemble_q95": (("scenario", "target"), q95),
        "p_meets_equal": (("scenario", "target"), equal),
    }


def _decisions(
    target_data: dict, reps: np.ndarray, scenario_names, w, ens: _Ensemble, seed
) -> dict[str, tuple]:
    """Best scenario per source and target, the weight against the ensemble's choice, and two probabilities.

    ``p_recommend_differently``: that the twins of the ensemble would choose
    different scenarios, given the Monte Carlo error of their probabilities
    (drawn jointly over scenarios with the jackknife covariance, since one
    twin's scenarios share its posterior draws).  ``p_ensemble_choice_changes``:
    the share of weight draws under which the ensemble would choose another
    scenario than at the point weights (NaN without weight draws).
    """
    p = target_data["p_meets"][1]
    n_sources, n_scenarios, n_targets = p.shape
    best_idx = p.argmax(axis=1)  # (source, target)
    best = (
        np.array(scenario_names, dtype=object)[best_idx].astype(str).reshape(n_sources, n_targets)
    )
    against = np.array(
        [sum(w[k] for k in ens.active if best[k, g] != best[-1, g]) for g in range(n_targets)]
    )
    rng = np.random.default_rng(seed)
    p_diff = np.zeros(n_targets)
    changes = np.full(n_targets, np.nan)
    for g in range(n_targets):
        cov = _jackknife_cov(reps[:, ens.active, :, g])  # (active, scenario, scenario)
        sims = np.stack(
            [
                rng.multivariate_normal(p[k, :, g], c, size=4000, method="eigh")
                for k, c in zip(ens.active, cov)
            ],
            axis=1,
        )
        choice = sims.argmax(axis=2)
        p_diff[g] = np.mean(np.any(choice != choice[:, :1], axis=1))
        if ens.weight_draws is not None:
            ensemble = ens.weight_draws @ p[ens.drawn, :, g]
            changes[g] = np.mean(ensemble.argmax(axis=1) != best_idx[-1, g])
    return {
        "best_scenario": (("source", "target"), best),
        "weight_against_ensemble": (("target",), against),
        "p_recommend_differently": (("target",), p_diff),
        "p_ensemble_choice_changes": (("target",), changes),
    }
