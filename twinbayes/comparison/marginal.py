"""Marginal likelihoods, for BMA weights: sequential Monte Carlo, or prior importance sampling."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "log_marginal_likelihood",
    "prior_importance_log_ml",
    "MarginalEstimate",
    "bma_weights",
    "IMPORTANCE_ESS_MIN",
    "IMPORTANCE_KHAT_MAX",
]


IMPORTANCE_ESS_MIN = 100.0
"""Fewest effective prior draws (Kish) for which a prior importance-sampling estimate is used."""
IMPORTANCE_KHAT_MAX = 0.7
"""Largest Pareto k of the importance weights for which the estimate is used (Vehtari et al. 2024)."""
SMC_CHAINS = 8
"""Independent SMC runs per marginal likelihood: their spread is the estimate's standard error,
and four give a standard deviation that is itself uncertain by about 40 %."""


class MarginalEstimate(NamedTuple):
    """A Monte Carlo estimate of ``log p(y | M)``.

    Attributes
    ----------
    log_ml : float
        The estimate.
    se : float
        Its Monte Carlo standard error (delta method on the log scale).
    ess : float
        Kish's effective sample size of the importance weights, ``(sum w)^2 / sum w^2``;
        a few hundred or more for a trustworthy estimate.
    draws : int
        Prior draws used.
    khat : float
        Pareto k of the importance weights (NaN where it cannot be estimated); above 0.7 the
        estimator's variance may be infinite and its SE meaningless (Vehtari, Simpson, Gelman,
        Yao & Gabry 2024, "Pareto smoothed importance sampling", JMLR 25(72)).
    """

    log_ml: float
    se: float
    ess: float
    draws: int
    khat: float = float("nan")

    @property
    def reliable(self) -> bool:
        """Whether the estimate and its SE can be used: ESS and Pareto k within bounds."""
        return bool(self.ess >= IMPORTANCE_ESS_MIN and self.khat <= IMPORTANCE_KHAT_MAX)


def prior_importance_log_ml(
    spec, design, draws: int = 20_000, seed: int = 0, chunk: int = 5_000
) -> MarginalEstimate:
    """Log marginal likelihood of a twin by Monte Carlo over its prior.

    .. math::

        p(y \\mid M) = \\int p(y \\mid \\theta, M)\\, p(\\theta \\mid M)\\, d\\theta
        \\approx \\frac{1}{S} \\sum_{s=1}^S p(y \\mid \\theta_s), \\qquad \\theta_s \\sim p(\\theta \\mid M),

    the simplest importance sampler (Kass & Raftery 1995, sec. 4.3), evaluated in NumPy with
    the same likelihood as the fitted model.  It is accurate where the prior is informative
    relative to the data -- a population prior and one to a few levels, as in Bayesian
    forecasting -- and needs no compilation; with many observations the weights degenerate
    (small ``ess``) and :func:`log_marginal_likelihood` (SMC) is the estimator to use.

    Parameters
    ----------
    spec : ModelSpec
    design : Design
        The patient's data matched to the spec (:func:`~twinbayes.dynamics.design.design_for`).
    draws : int
        Prior draws.
    seed : int
    chunk : int
        Draws evaluated at once (bounds memory).

    Returns
    -------
    MarginalEstimate

    References
    ----------
    Kass RE, Raftery AE (1995). Bayes factors. J Am Stat Assoc 90:773-795.
    """
    from ..model.twin_model import TwinModel

    model, rng = TwinModel.of(spec), np.random.default_rng(seed)
    log_lik = []
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        params = {name: p.prior.sample(rng, n) for name, p in spec.parameters.items()}
        parts = model.log_likelihood(params, design)
        log_lik.append(sum(np.asarray(v).reshape(n, -1).sum(axis=1) for v in parts.values()))
    ll = np.concatenate(log_lik)
    ll[~np.isfinite(ll)] = -np.inf
    if not np.isfinite(ll.max()):  # no prior draw can produce these data
        return MarginalEstimate(-np.inf, np.inf, 0.0, draws)
    log_ml = float(logsumexp(ll) - np.log(draws))
    w = np.exp(ll - ll.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    se = float(np.std(w, ddof=1) / (np.sqrt(draws) * w.mean()))
    return MarginalEstimate(log_ml, se, ess, draws, _weights_khat(ll))


def _weights_khat(log_w: np.ndarray) -> float:
    """Pareto k of the right tail of importance weights given on the log scale (arviz-stats'
    PSIS, ``psislw``, which fits the generalised Pareto to the largest weights; it takes the
    log-likelihood of PSIS-LOO, whose weights are its negative)."""
    from arviz_stats.base import array_stats

    finite = log_w[np.isfinite(log_w)]
    if finite.size < 20:
        return float("inf")
    try:
        _, k = array_stats.psislw(-finite, r_eff=1.0)
    except (ValueError, FloatingPointError):
        return float("inf")
    k = float(np.asarray(k, float))
    return k if np.isfinite(k) else float("inf")


def log_marginal_likelihood(
    model, draws: int = 2000, chains: int = SMC_CHAINS, seed: int = 0
) -> tuple[float, float]:
    """Log marginal likelihood of a PyMC model by sequential Monte Carlo.

    Each SMC chain gives an independent estimate (Del Moral, Doucet & Jasra
    2006); the estimate is their mean on the log scale and its standard error
    their standard deviation over ``sqrt(chains)``.

    Returns
    -------
    (log_ml, se)
    """
    import pymc as pm

    from ..model.twin_model import ieee_numerics

    with model, ieee_numerics():
        tr = pm.sample_smc(draws=draws, chains=chains, random_seed=seed, progressbar=False, cores=1)
    stages = tr["sample_stats"]["log_marginal_likelihood"].values.reshape(chains, -1)
    per_chain = np.array([_final_stage(row) for row in stages])
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(chains))


def _final_stage(row) -> float:
    """The last stage's estimate of one SMC chain; PyMC stores a chain's stages as numbers, or as
    one list when chains ran a different number of stages."""
    values = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in row])
    return float(values[np.isfinite(values)][-1])


def bma_weights(
    twins, inc: np.ndarray, draws: int | None, seed: int, method: str = "smc"
) -> dict[str, np.ndarray]:
    """BMA weights of the twins at positions ``inc`` from log marginal likelihoods (0 elsewhere).

    ``method`` is ``"smc"`` (:func:`log_marginal_likelihood`, ``draws`` per chain, default
    2000) or ``"importance"`` (:func:`prior_importance_log_ml`, ``draws`` prior draws, default
    20000; adds ``log_ml_ess`` and ``log_ml_khat``).  A twin whose importance-sampling estimate
    is not :attr:`~MarginalEstimate.reliable` (fewer than 100 effective draws, or Pareto k of
    the weights above 0.7: its SE then means nothing, e.g. a mean error of -21 against a
    reported SE of 0.94) is estimated by SMC instead; ``log_ml_method`` says which estimator
    each twin's number comes from.  The estimator's error is propagated by drawing
    ``log ML ~ Normal(estimate, se)``; returns ``log_ml``, ``log_ml_se``, ``bma`` and its 90 %
    interval ``bma_q05``/``bma_q95``.
    """
    if method not in ("smc", "importance"):
        raise ValueError(f"bma_method must be 'smc' or 'importance', got {method!r}")
    extra: dict[str, np.ndarray] = {}
    if method == "importance":
        est = [prior_importance_log_ml(t.spec, t.design, draws or 20_000, seed) for t in twins]
        extra = {
            "log_ml_ess": np.array([e.ess for e in est]),
            "log_ml_khat": np.array([e.khat for e in est]),
        }
        used = ["importance" if e.reliable else "smc" for e in est]
        lml = np.array(
            [
                (e.log_ml, e.se) if e.reliable else _smc_log_ml(t, draws=None, seed=seed)
                for e, t in zip(est, twins)
            ]
        )
    else:
        used = ["smc"] * len(twins)
        lml = np.array([_smc_log_ml(t, draws, seed) for t in twins])
    extra["log_ml_method"] = np.array(used)
    return {**_weights_from_log_ml(lml, inc, seed), **extra}


def _smc_log_ml(twin, draws: int | None, seed: int) -> tuple[float, float]:
    """A twin's log marginal likelihood and its SE by SMC (:func:`log_marginal_likelihood`)."""
    from ..model.twin_model import TwinModel

    model = TwinModel.of(twin.spec).pymc_model(twin.design)
    return log_marginal_likelihood(model, draws=draws or 2000, seed=seed)


def _weights_from_log_ml(lml: np.ndarray, inc: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Normalised ``exp(log ML)`` over ``inc``, with a 90 % interval from the estimators' errors."""
    k = len(lml)
    w = np.zeros(k)
    z = lml[inc, 0] - lml[inc, 0].max()
    w[inc] = np.exp(z) / np.exp(z).sum()
    sims = np.random.default_rng(seed).normal(lml[inc, 0], lml[inc, 1], size=(1000, len(inc)))
    ws = np.exp(sims - sims.max(axis=1, keepdims=True))
    ws /= ws.sum(axis=1, keepdims=True)
    q = np.zeros((2, k))
    q[:, inc] = np.quantile(ws, [0.05, 0.95], axis=0)
    return {"log_ml": lml[:, 0], "log_ml_se": lml[:, 1], "bma": w, "bma_q05": q[0], "bma_q95": q[1]}
