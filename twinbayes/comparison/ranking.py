"""The comparison of several twins of one patient: elpd table, weights, pairwise differences, notes.

Twins that failed their convergence gate get no weight unless the caller
opts in, and the table says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..fitting.mc_error import NOT_ESTIMABLE, SHORT, format_mcse
from ..fitting.twin import Twin
from .cv import standard_error
from .marginal import IMPORTANCE_ESS_MIN, IMPORTANCE_KHAT_MAX, bma_weights
from .notes import duplicate_notes, selection_bias_note
from .scoring import Scoring
from .weights import (
    bayesian_stacking_weights,
    bootstrap_stacking_weights,
    pseudo_bma_plus_weights,
    stacking_weights,
)

__all__ = ["Comparison", "compare", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = "bayes_stacking"
"""The weights a comparison hands on by default (:attr:`Comparison.weights`, a study's
``[comparison] weights``): Bayesian stacking, calibrated on few levels where the stacking optimum
is not (docs/comparison.md, "Is the answer calibrated?")."""


@dataclass
class Comparison:
    """The comparison of several twins of one patient.

    Attributes
    ----------
    table : xarray.Dataset
        One row per twin (dimension ``twin``), best first: ``elpd``, ``se``,
        ``p_loo``, ``elpd_diff``/``se_diff`` (against the best included twin),
        ``mcse`` (Monte Carlo SE of ``elpd``), ``elpd_reliable`` (no failed refit behind it),
        ``n_high_k``, ``loo_pit_p`` (p-value of the LOO-PIT uniformity test: an absolute check,
        where the elpd only ranks), ``cv_method``, weights (``stacking`` with bootstrap
        ``stacking_q05``/``stacking_q95``, ``bayes_stacking`` with its posterior
        ``bayes_stacking_q05``/``_q95``, ``pseudo_bma``, optionally ``bma``
        with ``bma_se``), ``elpd_waic`` (secondary), ``converged``,
        ``included`` and ``note``.
    pointwise : xarray.Dataset
        ``elpd_i``, ``pareto_k``, ``method`` per (twin, obs).
    pairwise : xarray.Dataset
        ``elpd_diff`` and ``se_diff`` for every ordered pair (twin, other).
    notes : list of str
        Flags: near-duplicate twins, possible selection bias, exclusions.
    weight_draws : xarray.Dataset
        ``stacking`` (Bayesian-bootstrap stacking weights), ``pseudo_bma``
        (its bootstrap replicates) and ``bayes_stacking`` (posterior draws), each
        ``(replicate, twin)``: the weights' uncertainty, for
        :func:`~twinbayes.decisions.twin_disagreement.disagreement`.
    """

    table: xr.Dataset
    pointwise: xr.Dataset
    pairwise: xr.Dataset
    notes: list[str] = field(default_factory=list)
    weight_draws: xr.Dataset | None = None

    def weight_draws_of(self, method: str = DEFAULT_WEIGHTS) -> dict[str, np.ndarray] | None:
        """Replicates of the ``method`` weights by twin name (for :func:`~twinbayes.decisions.twin_disagreement.disagreement`)."""
        if self.weight_draws is None or method not in self.weight_draws:
            return None
        da = self.weight_draws[method]
        return {str(t): da.sel(twin=t).values for t in da.twin.values}

    @property
    def weights(self) -> dict[str, float]:
        """The default weights (:data:`DEFAULT_WEIGHTS`, Bayesian stacking) by twin name."""
        return self.weights_of(DEFAULT_WEIGHTS)

    def weights_of(self, method: str) -> dict[str, float]:
        """The ``method`` weights (a column of :attr:`table`: ``stacking``, ``bayes_stacking``,
        ``pseudo_bma`` or ``bma``) by twin name."""
        return {str(t): float(w) for t, w in zip(self.table.twin.values, self.table[method].values)}

    def __str__(self) -> str:
        t = self.table
        cols = f"{'twin':<20} {'elpd':>8} {'se':>6} {'mcse':>6} {'diff':>7} {'dse':>6} {'p_loo':>6} {'stacking (90% BB)':>20} {'pBMA+':>6} {'Bayes-stacking (90%)':>21} {'PIT p':>6}"
        has_bma, has_crps = "bma" in t, "crps" in t
        if has_bma:
            cols += f" {'BMA':>6}"
        if has_crps:
            cols += f" {'CRPS':>8}"
        lines = [cols + "  cv / note"]
        for i in range(t.sizes["twin"]):
            r = t.isel(twin=i)
            stack = _interval(r, "stacking")
            line = (
                f"{str(r.twin.values):<20} {float(r.elpd):>8.2f} {float(r.se):>6.2f} "
                f"{_mcse_cell(float(r.mcse)):>6} {float(r.elpd_diff):>7.2f} "
                f"{float(r.se_diff):>6.2f} {float(r.p_loo):>6.2f} {stack:>20} {float(r.pseudo_bma):>6.2f}"
                f" {_interval(r, 'bayes_stacking'):>21} {float(r.loo_pit_p):>6.2f}"
            )
            if has_bma:
                line += f" {float(r.bma):>6.2f}"
            if has_crps:
                line += f" {float(r.crps):>8.3g}"
            note = str(r.note.values)
            lines.append(line + f"  {str(r.cv_method.values)}" + (f"; {note}" if note else ""))
        footnote = [f"{SHORT}: {NOT_ESTIMABLE}"] if any(SHORT in ln for ln in lines[1:]) else []
        return "\n".join(lines + [f"note: {n}" for n in self.notes + footnote])


def _pairwise(elpd_i: np.ndarray, names: list[str]) -> xr.Dataset:
    d = elpd_i[:, :, None] - elpd_i[:, None, :]
    return xr.Dataset(
        {
            "elpd_diff": (("twin", "other"), d.sum(axis=0)),
            "se_diff": (("twin", "other"), standard_error(d)),
        },
        coords={"twin": names, "other": names},
    )


def compare(
    twins: Sequence[Twin],
    *,
    include_unconverged: bool = False,
    threshold: float | None = None,
    max_refits: int = 10,
    kfold_k: int = 10,
    refit: bool = True,
    n_bootstrap: int = 200,
    bma: bool = False,
    bma_method: str = "smc",
    bma_draws: int | None = None,
    duplicate_tol: float = 0.1,
    cv: str = "loo",
    lfo_min_points: int = 3,
    lfo_horizon: int = 1,
    lfo_method: str = "approx",
    seed: int = 0,
    scores: Sequence[xr.Dataset] | None = None,
    **refit_kwargs,
) -> Comparison:
    """Compare twins of one patient out of sample and weight them.

    Parameters
    ----------
    twins : sequence of Twin
        Fitted to the same patient and the same observations.
    include_unconverged : bool
        Give weight to twins that failed their convergence gate (default: no;
        they are listed with the reason).
    threshold, max_refits, kfold_k, refit
        See :func:`loo`.
    n_bootstrap : int
        Bayesian-bootstrap replicates for the stacking-weight uncertainty.
    bma : bool
        Also compute BMA weights from marginal likelihoods.
    bma_method : {"smc", "importance"}
        How: sequential Monte Carlo (:func:`~twinbayes.comparison.log_marginal_likelihood`;
        general, seconds per twin) or importance sampling from the prior
        (:func:`~twinbayes.comparison.prior_importance_log_ml`; milliseconds, for
        population-prior twins with a few levels; its effective sample size is reported).
    bma_draws : int, optional
        SMC draws per chain (default 2000) or prior draws (default 20000).
    duplicate_tol : float
        Two twins whose predictive means at every observed time differ by
        less than this many predictive standard deviations are flagged as
        near-duplicates.
    cv : {"loo", "lfo"}
        Score each twin by PSIS-LOO (how well it predicts left-out points) or by
        leave-future-out CV (how well it *forecasts*, :func:`~twinbayes.comparison.lfo`);
        the weights stack the chosen predictive densities.  With ``"lfo"`` the
        pointwise ``obs`` dimension indexes forecast origins (``time``: the first
        time forecast), ``p_loo`` holds ``p_lfo``, ``n_high_k`` the refits PSIS
        could not avoid, and the table gains each twin's mean ``crps``.
    lfo_min_points, lfo_horizon, lfo_method
        See :func:`~twinbayes.comparison.lfo` (``min_points``, ``horizon``, ``method``).
    seed : int
    scores : sequence of xarray.Dataset, optional
        Each twin's scores, computed ahead by :class:`~twinbayes.comparison.scoring.Scoring`
        with these settings (``Scoring.of(kwargs)``; e.g. while later twins were fitting);
        default: scored here.  Scores made with other settings are refused.
    **refit_kwargs
        Sampler settings for exact refits.
    """
    twins = list(twins)
    if len(twins) < 2:
        raise ValueError("compare needs at least two twins")
    included = np.array([t.converged or include_unconverged for t in twins])
    if not included.any():
        raise ValueError(
            "no twin passed its convergence gate; to compare them anyway use --include-unconverged on the command line, include_unconverged=True in Python or [comparison] include_unconverged = true in a study"
        )
    names = twin_labels(twins)
    check_same_data(twins)
    scoring = Scoring(
        cv=cv,
        threshold=threshold,
        max_refits=max_refits,
        kfold_k=kfold_k,
        refit=refit,
        lfo_min_points=lfo_min_points,
        lfo_horizon=lfo_horizon,
        lfo_method=lfo_method,
        include_unconverged=include_unconverged,
        seed=seed,
        refit_kwargs=dict(refit_kwargs),
    )
    if scores is None:
        results = [scoring(t) for t in twins]
    else:
        results = list(scores)
        scoring.check(results, twins)
    elpd_i = np.stack([r["elpd_i"].values for r in results], axis=1)
    inc = np.flatnonzero(included)
    weights, draws = _weights(elpd_i, inc, n_bootstrap, seed)
    pair = _pairwise(elpd_i, names)
    best = inc[np.argmax(elpd_i.sum(axis=0)[inc])]
    table = _table(
        twins, names, results, elpd_i, pair, best, weights, included, include_unconverged
    )
    table.attrs["cv"] = cv
    if cv == "lfo":
        table["crps"] = ("twin", [r.attrs["crps"] for r in results])
    if bma:
        for var, values in bma_weights(twins, inc, bma_draws, seed, bma_method).items():
            table[var] = ("twin", values)
    notes = _marginal_notes(table, names)
    if (~included).any():
        notes.append(
            f"excluded from the weights (failed convergence gate): {', '.join(np.array(names)[~included])}"
        )
    notes += duplicate_notes(twins, names, duplicate_tol, seed)
    bias = selection_bias_note(elpd_i[:, inc], [names[i] for i in inc])
    if bias:
        notes.append(bias)
    order = np.argsort(-(elpd_i.sum(axis=0) + np.where(included, 0, -1e12)))
    weight_draws = xr.Dataset(
        {m: (("replicate", "twin"), v) for m, v in draws.items()}, coords={"twin": names}
    )
    return Comparison(
        table.isel(twin=order), _pointwise(results, elpd_i, names), pair, notes, weight_draws
    )


def _marginal_notes(table: xr.Dataset, names: list[str]) -> list[str]:
    """Which twins' BMA weights came from SMC because prior importance sampling was unreliable."""
    if "log_ml_method" not in table or "log_ml_ess" not in table:
        return []
    switched = [
        f"{n} (ESS {e:.0f}, Pareto k {k:.2f})"
        for n, e, k, m in zip(
            names,
            table["log_ml_ess"].values,
            table["log_ml_khat"].values,
            table["log_ml_method"].values,
        )
        if m == "smc"
    ]
    if not switched:
        return []
    return [
        "BMA by prior importance sampling was unreliable for "
        + ", ".join(switched)
        + f" (fewer than {IMPORTANCE_ESS_MIN:.0f} effective prior draws or Pareto k above "
        f"{IMPORTANCE_KHAT_MAX}: the data dominate the prior); their marginal likelihoods are "
        "estimated by SMC instead"
    ]


def twin_labels(twins: list[Twin]) -> list[str]:
    """Twin names, suffixed ``#i`` where the same spec appears twice."""
    names = [t.name for t in twins]
    return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def check_same_data(twins: list[Twin]) -> None:
    """Raise unless every twin was fitted to the same patient's same observations."""
    ref = twins[0].design
    for t in twins[1:]:
        same = (
            t.patient.id == twins[0].patient.id
            and t.design.n_obs == ref.n_obs
            and all(
                np.array_equal(t.design.times.get(n, []), ref.times[n])
                and np.array_equal(t.design.values.get(n, []), ref.values[n])
                for n in ref.times
            )
        )
        if not same:
            raise ValueError(
                f"{t.name} was fitted to other observations than {twins[0].name}; elpd values are not comparable"
            )


def _weights(
    elpd_i: np.ndarray, inc: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Stacking (with its 90 % Bayesian-bootstrap interval), pseudo-BMA+ and Bayesian stacking
    (posterior mean, 90 % posterior interval) weights; 0 for excluded twins.

    Also their replicates, ``(replicate, twin)`` per method: the Bayesian-bootstrap
    stacking weights, the pseudo-BMA+ bootstrap weights and posterior draws of the Bayesian
    stacking weights (:func:`~twinbayes.comparison.weights.bayesian_stacking_weights`).
    """
    k = elpd_i.shape[1]
    names = ("stacking", "stacking_q05", "stacking_q95", "pseudo_bma", "bayes_stacking")
    out = {name: np.zeros(k) for name in (*names, "bayes_stacking_q05", "bayes_stacking_q95")}
    draws = {m: np.zeros((n_bootstrap, k)) for m in ("stacking", "pseudo_bma", "bayes_stacking")}
    if len(inc) == 1:
        for v in (*out.values(), *draws.values()):
            v[..., inc] = 1.0
        return out, draws
    out["stacking"][inc] = stacking_weights(elpd_i[:, inc])
    draws["stacking"][:, inc] = bootstrap_stacking_weights(elpd_i[:, inc], n_bootstrap, seed)
    out["stacking_q05"][inc], out["stacking_q95"][inc] = np.quantile(
        draws["stacking"][:, inc], [0.05, 0.95], axis=0
    )
    mean, replicates = pseudo_bma_plus_weights(
        elpd_i[:, inc], n_bootstrap=max(1000, n_bootstrap), seed=seed
    )
    out["pseudo_bma"][inc] = mean
    draws["pseudo_bma"][:, inc] = replicates[:n_bootstrap]
    mean, posterior = bayesian_stacking_weights(elpd_i[:, inc], seed=seed)
    out["bayes_stacking"][inc] = mean
    out["bayes_stacking_q05"][inc], out["bayes_stacking_q95"][inc] = np.quantile(
        posterior, [0.05, 0.95], axis=0
    )
    pick = np.linspace(0, len(posterior) - 1, n_bootstrap).round().astype(int)
    draws["bayes_stacking"][:, inc] = posterior[pick]
    return out, draws


def _row_notes(
    twins: list[Twin], results: list[xr.Dataset], include_unconverged: bool
) -> list[str]:
    """Per twin: why it failed its gate, high Pareto k left unrefitted, and refits that failed their gate."""
    notes = [
        ""
        if t.converged
        else "failed convergence gate: "
        + "; ".join(t.reasons)
        + ("" if include_unconverged else " -> no weight")
        for t in twins
    ]
    for i, r in enumerate(results):
        if r.attrs["cv_method"] == "psis-loo" and r.attrs["n_high_k"]:
            notes[i] += ("; " if notes[i] else "") + (
                f"{r.attrs['n_high_k']} observation(s) with Pareto k > {r.attrs['threshold']:.2f} "
                "not refitted: their PSIS elpd is unreliable"
            )
        if r.attrs["refits_unconverged"]:
            notes[i] += (
                ("; " if notes[i] else "")
                + f"UNRELIABLE: its elpd rests on {r.attrs['refits_unconverged']} of "
                f"{r.attrs['refits']} refits that failed their gate, and so does its weight"
                + (f" ({r.attrs['failed_refits']})" if r.attrs.get("failed_refits") else "")
            )
        n_params = len(twins[i].spec.parameters)
        if r.attrs["p_loo"] > n_params:
            notes[i] += ("; " if notes[i] else "") + (
                f"p_loo {r.attrs['p_loo']:.1f} > {n_params} parameters: the model is misspecified "
                "or its elpd estimate unreliable (Vehtari et al. 2017, sec. 4.2; loo's diagnostics)"
            )
    return notes


def _interval(row: xr.Dataset, name: str) -> str:
    """A weight and its 90 % interval, ``0.84 (0.55-0.99)``."""
    lo, hi = float(row[f"{name}_q05"]), float(row[f"{name}_q95"])
    return f"{float(row[name]):.2f} ({lo:.2f}-{hi:.2f})"


def _mcse_cell(mcse: float) -> str:
    """An elpd's MCSE in the table's narrow column (``n/e``: :data:`~twinbayes.fitting.mc_error.NOT_ESTIMABLE`, footnoted)."""
    return format_mcse(mcse, 2, words=SHORT)


def elpd_reliable(results: list[xr.Dataset]) -> list[bool]:
    """Per twin: whether its elpd rests on no cross-validation refit that failed its gate."""
    return [not r.attrs["refits_unconverged"] for r in results]


def loo_pit_p(twin: Twin) -> float:
    """p-value of the simultaneous LOO-PIT uniformity test of one twin (Säilynoja et al. 2022,
    :func:`~twinbayes.fitting.calibration.pit_uniformity_test`); NaN where it cannot be computed."""
    from ..fitting.calibration import loo_pit, pit_uniformity_test

    try:
        return pit_uniformity_test(loo_pit(twin)).p_value
    except (ValueError, KeyError, TypeError, FloatingPointError):
        return float("nan")


def _table(
    twins, names, results, elpd_i, pair, best, weights, included, include_unconverged
) -> xr.Dataset:
    """One row per twin: elpd and its SE, differences to the best, weights, gate and notes."""
    return xr.Dataset(
        {
            "elpd": ("twin", elpd_i.sum(axis=0)),
            "se": ("twin", [r.attrs["se"] for r in results]),
            "mcse": ("twin", [r.attrs.get("mcse", np.nan) for r in results]),
            "elpd_reliable": ("twin", elpd_reliable(results)),
            "p_loo": ("twin", [r.attrs["p_loo"] for r in results]),
            "elpd_diff": ("twin", pair["elpd_diff"].values[:, best]),
            "se_diff": ("twin", pair["se_diff"].values[:, best]),
            "n_high_k": ("twin", [r.attrs["n_high_k"] for r in results]),
            "loo_pit_p": ("twin", [loo_pit_p(t) for t in twins]),
            "cv_method": ("twin", [r.attrs["cv_method"] for r in results]),
            **{name: ("twin", values) for name, values in weights.items()},
            "elpd_waic": ("twin", [r.attrs["elpd_waic"] for r in results]),
            "converged": ("twin", [t.converged for t in twins]),
            "included": ("twin", included),
            "note": ("twin", _row_notes(twins, results, include_unconverged)),
        },
        coords={"twin": names},
        attrs={
            "patient": twins[0].patient.label,
            "n_obs": int(elpd_i.shape[0]),
            "threshold": results[0].attrs["threshold"],
        },
    )


def _pointwise(results: list[xr.Dataset], elpd_i: np.ndarray, names: list[str]) -> xr.Dataset:
    """``elpd_i``, ``pareto_k`` and ``method`` per (twin, obs)."""
    return xr.Dataset(
        {
            "elpd_i": (("twin", "obs"), elpd_i.T),
            "pareto_k": (("twin", "obs"), np.stack([r["pareto_k"].values for r in results])),
            "method": (("twin", "obs"), np.stack([r["method"].values for r in results])),
        },
        coords={
            "twin": names,
            "obs": results[0]["obs"].values,
            "time": ("obs", results[0]["time"].values),
        },
    )
