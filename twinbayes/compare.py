"""Out-of-sample comparison of twins of one patient, and their weights.

Each twin's expected log pointwise predictive density (elpd) is estimated by
PSIS-LOO (Vehtari, Gelman & Gabry 2017, Stat Comput 27:1413-1432; Pareto
smoothing by ArviZ).  Where the Pareto shape ``k`` of an observation exceeds
the sample-size dependent threshold ``min(1 - 1/log10(S), 0.7)`` (Vehtari,
Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance sampling",
JMLR 25(72)), the importance-sampling estimate is unreliable and twinbayes
escalates automatically: the twin is refitted without that observation and
its elpd computed exactly; when more than ``max_refits`` observations need
it, the whole twin is evaluated by K-fold cross-validation instead.  What was
done is recorded per observation (``method``: psis, refit or kfold).

Weights (Yao, Vehtari, Simpson & Gelman 2018, Bayesian Analysis 13:917-1007):
stacking of predictive distributions, pseudo-BMA+ (Bayesian-bootstrap
regularised), and optionally BMA from SMC estimates of the marginal
likelihood.  The uncertainty of the stacking weights is estimated by the
Bayesian bootstrap over observations.  Twins that failed their convergence
gate get no weight unless the caller opts in, and the table says why.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import xarray as xr
from scipy.optimize import Bounds, LinearConstraint, minimize
from scipy.special import logsumexp
from scipy.stats import dirichlet, norm

from .dynamics.predict import log_likelihood
from .fit import Refitter, Twin

__all__ = [
    "Comparison",
    "loo",
    "kfold",
    "compare",
    "k_threshold",
    "stacking_weights",
    "pseudo_bma_plus_weights",
    "bootstrap_stacking_weights",
    "log_marginal_likelihood",
]

log = logging.getLogger("twinbayes")


def k_threshold(n_draws: int) -> float:
    """Pareto-k above which PSIS is unreliable: ``min(1 - 1/log10(S), 0.7)`` (Vehtari et al. 2024)."""
    return float(min(1.0 - 1.0 / np.log10(n_draws), 0.7))


def _se(values: np.ndarray, axis=0) -> np.ndarray:
    """Standard error of a sum of pointwise values: ``sqrt(n var)`` with the n-1 variance (as in loo and ArviZ)."""
    n = np.shape(values)[axis]
    return np.sqrt(n * np.var(values, axis=axis, ddof=1))


def _pointwise_loglik(twin: Twin) -> xr.DataArray:
    """All observables' log-likelihood stacked on one ``obs`` dimension: (chain, draw, obs)."""
    ll = twin.idata["log_likelihood"]
    parts = []
    for name in twin.design.times:
        da = ll[name]
        dim = [d for d in da.dims if d not in ("chain", "draw")][0]
        parts.append(da.rename({dim: "obs"}).reset_coords(drop=True).assign_coords(observable=("obs", [name] * da.sizes[dim])))
    out = xr.concat(parts, dim="obs") if len(parts) > 1 else parts[0]
    times = np.concatenate([twin.design.times[n] for n in twin.design.times])
    return out.assign_coords(obs=np.arange(out.sizes["obs"]), time=("obs", times))


def _heldout_elpd(refitter: Refitter, holdout: np.ndarray, seed: int) -> tuple[np.ndarray, bool]:
    """Refit without the observations flagged in ``holdout`` (bool over obs); their exact elpd.

    Returns the elpd of each held-out observation (in observation order) and
    whether the refit passed its convergence gate.
    """
    twin = refitter.twin
    params, diagnostics = refitter.posterior(holdout, seed)
    ll = log_likelihood(twin.spec, params, twin.design.split(holdout)[1])
    lpd = np.concatenate([logsumexp(arr, axis=0) - np.log(arr.shape[0]) for arr in ll.values()])
    return lpd, diagnostics.passed


def kfold(twin: Twin, k: int = 10, groups: Sequence | None = None, seed: int = 0, **refit_kwargs) -> xr.Dataset:
    """K-fold cross-validation of a twin (exact refits, one per fold).

    Parameters
    ----------
    twin : Twin
    k : int
        Number of folds (at most the number of observations or groups).
    groups : sequence, optional
        A label per observation (in :meth:`Design.index` order); observations
        of one group are held out together (grouped K-fold).
    seed : int
        Seeds the fold assignment and the refits.

    Returns
    -------
    xarray.Dataset
        ``elpd_i`` and ``fold`` per observation; attributes ``elpd``, ``se``.
    """
    n = twin.design.n_obs
    rng = np.random.default_rng(seed)
    labels = np.arange(n) if groups is None else np.asarray(groups)
    if len(labels) != n:
        raise ValueError(f"groups has {len(labels)} labels for {n} observations")
    unique = np.unique(labels)
    k = int(min(k, len(unique)))
    if k < 2:
        raise ValueError("K-fold needs at least 2 folds")
    fold_of_group = dict(zip(rng.permutation(unique), np.arange(len(unique)) % k))
    fold = np.array([fold_of_group[g] for g in labels])
    elpd_i = np.empty(n)
    refits = []
    refitter = Refitter(twin, **refit_kwargs)
    for f in range(k):
        hold = fold == f
        elpd_i[hold], converged = _heldout_elpd(refitter, hold, seed + 1 + f)
        refits.append(converged)
    ds = xr.Dataset({"elpd_i": ("obs", elpd_i), "fold": ("obs", fold)})
    ds.attrs.update(elpd=float(elpd_i.sum()), se=float(_se(elpd_i)), k=k, refits_converged=int(sum(refits)))
    return ds


def loo(
    twin: Twin,
    *,
    threshold: float | None = None,
    max_refits: int = 10,
    kfold_k: int = 10,
    seed: int = 0,
    refit: bool = True,
    **refit_kwargs,
) -> xr.Dataset:
    """PSIS-LOO for one twin with automatic escalation for high Pareto k.

    Parameters
    ----------
    twin : Twin
    threshold : float, optional
        Pareto-k threshold; default :func:`k_threshold` of the number of draws.
    max_refits : int
        At most this many exact refits; with more high-k observations the
        twin is evaluated by K-fold CV instead.
    kfold_k : int
        Folds for that fallback.
    seed : int
    refit : bool
        Set False to only report high k (no refits).
    **refit_kwargs
        Sampler settings for the refits (default: the twin's own).

    Returns
    -------
    xarray.Dataset
        Per observation (``obs``): ``elpd_i``, ``pareto_k``, ``lppd_i``,
        ``method`` (psis/refit/kfold), ``time``, ``observable``; attributes
        ``elpd``, ``se``, ``p_loo``, ``threshold``, ``n_high_k``, ``cv_method``,
        ``refits``, ``refits_unconverged`` (refits that failed their own gate)
        and ``elpd_waic``/``p_waic`` (secondary).
    """
    import arviz_stats as azs

    ll = _pointwise_loglik(twin)
    tree = xr.DataTree.from_dict({"posterior": twin.idata["posterior"].to_dataset(), "log_likelihood": xr.Dataset({"y": ll})})
    with warnings.catch_warnings():  # high Pareto k is handled below, not just warned about
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        res = azs.loo(tree, pointwise=True, var_name="y")
    s = ll.sizes["chain"] * ll.sizes["draw"]
    thr = k_threshold(s) if threshold is None else float(threshold)
    flat = ll.values.reshape(s, -1)
    lppd_i = logsumexp(flat, axis=0) - np.log(s)
    elpd_i = np.asarray(res.elpd_i.values, float).copy()
    pareto_k = np.asarray(res.pareto_k.values, float)
    method = np.array(["psis"] * len(elpd_i), dtype=object)
    high = pareto_k > thr
    cv_method, refits, unconverged = "psis-loo", 0, 0
    if refit and high.any():
        if high.sum() <= max_refits:
            refitter = Refitter(twin, **refit_kwargs)
            for j in np.flatnonzero(high):
                hold = np.zeros(len(elpd_i), bool)
                hold[j] = True
                value, converged = _heldout_elpd(refitter, hold, seed + 1 + j)
                elpd_i[j] = value[0]
                method[j] = "refit"
                refits += 1
                unconverged += not converged
            cv_method = "psis-loo + exact refits"
        else:
            kf = kfold(twin, k=kfold_k, seed=seed, **refit_kwargs)
            elpd_i = kf["elpd_i"].values
            method[:] = "kfold"
            refits = kf.attrs["k"]
            unconverged = kf.attrs["k"] - kf.attrs["refits_converged"]
            cv_method = f"{kf.attrs['k']}-fold cv"
        log.info("%s: %d observation(s) with Pareto k > %.2f -> %s", twin.name, int(high.sum()), thr, cv_method)
    n = len(elpd_i)
    p_waic_i = flat.var(axis=0, ddof=1)
    ds = xr.Dataset(
        {
            "elpd_i": ("obs", elpd_i),
            "pareto_k": ("obs", pareto_k),
            "lppd_i": ("obs", lppd_i),
            "method": ("obs", method.astype(str)),
        },
        coords={"obs": ll["obs"].values, "time": ("obs", ll["time"].values)},
    )
    ds.attrs.update(
        twin=twin.name,
        elpd=float(elpd_i.sum()),
        se=float(_se(elpd_i)),
        p_loo=float((lppd_i - elpd_i).sum()),
        threshold=thr,
        n_high_k=int(high.sum()),
        cv_method=cv_method,
        refits=refits,
        refits_unconverged=unconverged,
        elpd_waic=float((lppd_i - p_waic_i).sum()),
        p_waic=float(p_waic_i.sum()),
    )
    return ds


# --------------------------------------------------------------------- weights


def stacking_weights(elpd_i: np.ndarray, obs_weights: np.ndarray | None = None) -> np.ndarray:
    """Stacking of predictive distributions (Yao et al. 2018, eq. 4).

    Maximises ``sum_i a_i log sum_k w_k exp(elpd_ik)`` over the simplex, with
    ``a_i = 1`` or Bayesian-bootstrap observation weights.

    Parameters
    ----------
    elpd_i : ndarray, shape (n_obs, n_twins)
    obs_weights : ndarray, shape (n_obs,), optional
    """
    elpd_i = np.asarray(elpd_i, float)
    n, k = elpd_i.shape
    a = np.ones(n) if obs_weights is None else np.asarray(obs_weights, float)
    dens = np.exp(elpd_i - elpd_i.max(axis=1, keepdims=True))  # row scaling does not move the optimum

    def objective(w):
        return -np.sum(a * np.log(dens @ w))

    def gradient(w):
        return -np.sum(a[:, None] * dens / (dens @ w)[:, None], axis=0)

    res = minimize(
        objective, np.full(k, 1.0 / k), jac=gradient, bounds=Bounds(np.zeros(k), np.ones(k)),
        constraints=LinearConstraint(np.ones(k), 1.0, 1.0),
    )
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def pseudo_bma_plus_weights(elpd_i: np.ndarray, n_bootstrap: int = 1000, seed: int = 124) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-BMA+ weights: Bayesian-bootstrap regularised Akaike-type weights (Yao et al. 2018, sec. 3.4).

    Returns
    -------
    weights : ndarray, shape (n_twins,)
        The mean over bootstrap replicates.
    replicates : ndarray, shape (n_bootstrap, n_twins)
    """
    elpd_i = np.asarray(elpd_i, float)
    n = elpd_i.shape[0]
    alpha = dirichlet.rvs(alpha=[1] * n, size=n_bootstrap, random_state=seed)
    z = alpha @ (n * elpd_i)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w.mean(axis=0), w


def bootstrap_stacking_weights(elpd_i: np.ndarray, n_bootstrap: int = 200, seed: int = 0) -> np.ndarray:
    """Stacking weights under Bayesian-bootstrap reweighting of the observations.

    Their spread is the uncertainty of the stacking weights that comes from
    the finite number of observations (Rubin 1981; Yao et al. 2018, sec. 3.4).

    Returns
    -------
    ndarray, shape (n_bootstrap, n_twins)
    """
    n = np.asarray(elpd_i).shape[0]
    alpha = np.random.default_rng(seed).dirichlet(np.ones(n), size=n_bootstrap) * n
    return np.array([stacking_weights(elpd_i, a) for a in alpha])


def log_marginal_likelihood(model, draws: int = 2000, chains: int = 4, seed: int = 0) -> tuple[float, float]:
    """Log marginal likelihood of a PyMC model by sequential Monte Carlo.

    Each SMC chain gives an independent estimate (Del Moral, Doucet & Jasra
    2006); the estimate is their mean on the log scale and its standard error
    their standard deviation over ``sqrt(chains)``.

    Returns
    -------
    (log_ml, se)
    """
    import pymc as pm

    with model:
        tr = pm.sample_smc(draws=draws, chains=chains, random_seed=seed, progressbar=False, cores=1)
    stages = tr["sample_stats"]["log_marginal_likelihood"].values.reshape(chains, -1)  # (chain, stage), last is final
    per_chain = np.array([float(row[-1]) for row in stages])
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(chains))


# ------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """The comparison of several twins of one patient.

    Attributes
    ----------
    table : xarray.Dataset
        One row per twin (dimension ``twin``), best first: ``elpd``, ``se``,
        ``p_loo``, ``elpd_diff``/``se_diff`` (against the best included twin),
        ``n_high_k``, ``cv_method``, weights (``stacking`` with bootstrap
        ``stacking_q05``/``stacking_q95``, ``pseudo_bma``, optionally ``bma``
        with ``bma_se``), ``elpd_waic`` (secondary), ``converged``,
        ``included`` and ``note``.
    pointwise : xarray.Dataset
        ``elpd_i``, ``pareto_k``, ``method`` per (twin, obs).
    pairwise : xarray.Dataset
        ``elpd_diff`` and ``se_diff`` for every ordered pair (twin, other).
    notes : list of str
        Flags: near-duplicate twins, possible selection bias, exclusions.
    """

    table: xr.Dataset
    pointwise: xr.Dataset
    pairwise: xr.Dataset
    notes: list[str] = field(default_factory=list)

    @property
    def weights(self) -> dict[str, float]:
        """Stacking weights by twin name."""
        return {str(t): float(w) for t, w in zip(self.table.twin.values, self.table.stacking.values)}

    def __str__(self) -> str:
        t = self.table
        cols = f"{'twin':<20} {'elpd':>8} {'se':>6} {'diff':>7} {'dse':>6} {'p_loo':>6} {'stacking (90% BB)':>20} {'pBMA+':>6}"
        has_bma = "bma" in t
        if has_bma:
            cols += f" {'BMA':>6}"
        lines = [cols + "  cv / note"]
        for i in range(t.sizes["twin"]):
            r = t.isel(twin=i)
            stack = f"{float(r.stacking):.2f} ({float(r.stacking_q05):.2f}-{float(r.stacking_q95):.2f})"
            line = (
                f"{str(r.twin.values):<20} {float(r.elpd):>8.2f} {float(r.se):>6.2f} {float(r.elpd_diff):>7.2f} "
                f"{float(r.se_diff):>6.2f} {float(r.p_loo):>6.2f} {stack:>20} {float(r.pseudo_bma):>6.2f}"
            )
            if has_bma:
                line += f" {float(r.bma):>6.2f}"
            note = str(r.note.values)
            lines.append(line + f"  {str(r.cv_method.values)}" + (f"; {note}" if note else ""))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _pairwise(elpd_i: np.ndarray, names: list[str]) -> xr.Dataset:
    d = elpd_i[:, :, None] - elpd_i[:, None, :]
    return xr.Dataset(
        {"elpd_diff": (("twin", "other"), d.sum(axis=0)), "se_diff": (("twin", "other"), _se(d))},
        coords={"twin": names, "other": names},
    )


def _duplicate_notes(twins: list[Twin], names: list[str], tol: float, seed: int) -> list[str]:
    """Flag pairs of twins whose posterior predictive distributions at the observed times coincide.

    Pointwise elpd values are too noisy for this (PSIS error); instead the
    predictive means are compared in units of the predictive standard
    deviation: ``max_i |m_a,i - m_b,i| / sd_i < tol``.
    """
    from .ensemble import predictive_draws

    pred = [predictive_draws(t, n_draws=2000, seed=seed).values for t in twins]
    notes = []
    for a in range(len(twins)):
        for b in range(a + 1, len(twins)):
            sd = np.sqrt(0.5 * (pred[a].var(axis=0) + pred[b].var(axis=0)))
            gap = float(np.max(np.abs(pred[a].mean(axis=0) - pred[b].mean(axis=0)) / sd))
            if twins[a].spec.sha256 == twins[b].spec.sha256:
                notes.append(f"{names[a]} and {names[b]} are the same spec (identical text): their weights split arbitrarily")
            elif gap < tol:
                notes.append(
                    f"{names[a]} and {names[b]} are near-duplicates: their predictive means differ by at most "
                    f"{gap:.3f} predictive SD at the observed times; the data cannot tell them apart and their "
                    "weights split arbitrarily"
                )
    return notes


def _selection_bias_note(elpd_i: np.ndarray, names: list[str]) -> str | None:
    """Order-statistic check for selection-induced bias (McLatchie & Vehtari 2024, Stat Comput 34:156)."""
    k = elpd_i.shape[1]
    if k <= 11:  # as in ArviZ: too few candidates for a stable estimate
        return None
    order = np.argsort(-elpd_i.sum(axis=0))
    base = order[k // 2]
    diffs = (elpd_i - elpd_i[:, [base]]).sum(axis=0)  # the baseline's own 0 included, as in the paper's code
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
    bma_draws: int = 2000,
    duplicate_tol: float = 0.1,
    seed: int = 0,
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
        Also compute BMA weights from SMC marginal likelihoods (slow).
    duplicate_tol : float
        Two twins whose predictive means at every observed time differ by
        less than this many predictive standard deviations are flagged as
        near-duplicates.
    seed : int
    **refit_kwargs
        Sampler settings for exact refits.
    """
    twins = list(twins)
    if len(twins) < 2:
        raise ValueError("compare needs at least two twins")
    names = [t.name for t in twins]
    names = [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]  # same spec twice: tell them apart
    ref = twins[0].design
    for t in twins[1:]:
        if t.patient.id != twins[0].patient.id or t.design.n_obs != ref.n_obs or any(
            not np.array_equal(t.design.times.get(n, []), ref.times[n]) or not np.array_equal(t.design.values.get(n, []), ref.values[n])
            for n in ref.times
        ):
            raise ValueError(f"{t.name} was fitted to other observations than {twins[0].name}; elpd values are not comparable")

    results = [loo(t, threshold=threshold, max_refits=max_refits, kfold_k=kfold_k, seed=seed, refit=refit and (t.converged or include_unconverged), **refit_kwargs) for t in twins]
    elpd_i = np.stack([r["elpd_i"].values for r in results], axis=1)
    included = np.array([t.converged or include_unconverged for t in twins])
    notes_row = ["" if t.converged else "failed convergence gate: " + "; ".join(t.reasons) + ("" if include_unconverged else " -> no weight") for t in twins]
    for i, r in enumerate(results):
        if r.attrs["refits_unconverged"]:
            notes_row[i] += ("; " if notes_row[i] else "") + f"{r.attrs['refits_unconverged']} of {r.attrs['refits']} refits failed their gate"
    notes = []
    if not included.any():
        raise ValueError("no twin passed its convergence gate; pass include_unconverged=True to compare them anyway")
    if (~included).any():
        notes.append(f"excluded from the weights (failed convergence gate): {', '.join(np.array(names)[~included])}")

    k = len(twins)
    stack = np.zeros(k)
    q05 = np.zeros(k)
    q95 = np.zeros(k)
    pbma = np.zeros(k)
    inc = np.flatnonzero(included)
    if len(inc) == 1:
        stack[inc] = q05[inc] = q95[inc] = pbma[inc] = 1.0
    else:
        stack[inc] = stacking_weights(elpd_i[:, inc])
        boot = bootstrap_stacking_weights(elpd_i[:, inc], n_bootstrap, seed)
        q05[inc], q95[inc] = np.quantile(boot, [0.05, 0.95], axis=0)
        pbma[inc] = pseudo_bma_plus_weights(elpd_i[:, inc], seed=seed)[0]

    elpd = elpd_i.sum(axis=0)
    best = inc[np.argmax(elpd[inc])]
    pair = _pairwise(elpd_i, names)
    table = xr.Dataset(
        {
            "elpd": ("twin", elpd),
            "se": ("twin", [r.attrs["se"] for r in results]),
            "p_loo": ("twin", [r.attrs["p_loo"] for r in results]),
            "elpd_diff": ("twin", pair["elpd_diff"].values[:, best]),
            "se_diff": ("twin", pair["se_diff"].values[:, best]),
            "n_high_k": ("twin", [r.attrs["n_high_k"] for r in results]),
            "cv_method": ("twin", [r.attrs["cv_method"] for r in results]),
            "stacking": ("twin", stack),
            "stacking_q05": ("twin", q05),
            "stacking_q95": ("twin", q95),
            "pseudo_bma": ("twin", pbma),
            "elpd_waic": ("twin", [r.attrs["elpd_waic"] for r in results]),
            "converged": ("twin", [t.converged for t in twins]),
            "included": ("twin", included),
            "note": ("twin", notes_row),
        },
        coords={"twin": names},
        attrs={"patient": twins[0].patient.id, "n_obs": int(elpd_i.shape[0]), "threshold": results[0].attrs["threshold"]},
    )
    if bma:
        from .fit import build_model

        lml = np.array([log_marginal_likelihood(build_model(t.spec, t.design), draws=bma_draws, seed=seed) for t in twins])
        w = np.zeros(k)
        z = lml[inc, 0] - lml[inc, 0].max()
        w[inc] = np.exp(z) / np.exp(z).sum()
        # propagate the estimator's error: log ML ~ Normal(estimate, se)
        sims = np.random.default_rng(seed).normal(lml[inc, 0], lml[inc, 1], size=(1000, len(inc)))
        ws = np.exp(sims - sims.max(axis=1, keepdims=True))
        ws /= ws.sum(axis=1, keepdims=True)
        bma_q = np.zeros((2, k))
        bma_q[:, inc] = np.quantile(ws, [0.05, 0.95], axis=0)
        table["log_ml"] = ("twin", lml[:, 0])
        table["log_ml_se"] = ("twin", lml[:, 1])
        table["bma"] = ("twin", w)
        table["bma_q05"] = ("twin", bma_q[0])
        table["bma_q95"] = ("twin", bma_q[1])
    pointwise = xr.Dataset(
        {
            "elpd_i": (("twin", "obs"), elpd_i.T),
            "pareto_k": (("twin", "obs"), np.stack([r["pareto_k"].values for r in results])),
            "method": (("twin", "obs"), np.stack([r["method"].values for r in results])),
        },
        coords={"twin": names, "obs": results[0]["obs"].values, "time": ("obs", results[0]["time"].values)},
    )
    notes += _duplicate_notes(twins, names, duplicate_tol, seed)
    bias = _selection_bias_note(elpd_i[:, inc], [names[i] for i in inc])
    if bias:
        notes.append(bias)
    order = np.argsort(-(elpd + np.where(included, 0, -1e12)))
    return Comparison(table.isel(twin=order), pointwise, pair, notes)
