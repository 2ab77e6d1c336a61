"""Marginal likelihoods by sequential Monte Carlo, for BMA weights."""

from __future__ import annotations

import numpy as np

__all__ = ["log_marginal_likelihood", "bma_weights"]


def log_marginal_likelihood(
    model, draws: int = 2000, chains: int = 4, seed: int = 0
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

    with model:
        tr = pm.sample_smc(draws=draws, chains=chains, random_seed=seed, progressbar=False, cores=1)
    stages = tr["sample_stats"]["log_marginal_likelihood"].values.reshape(
        chains, -1
    )  # (chain, stage), last is final
    per_chain = np.array([float(row[-1]) for row in stages])
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(chains))


def bma_weights(twins, inc: np.ndarray, draws: int, seed: int) -> dict[str, np.ndarray]:
    """BMA weights of the twins at positions ``inc`` from SMC log marginal likelihoods (0 elsewhere).

    The estimator's error is propagated by drawing ``log ML ~ Normal(estimate, se)``;
    returns ``log_ml``, ``log_ml_se``, ``bma`` and its 90 % interval ``bma_q05``/``bma_q95``.
    """
    from ..model import TwinModel

    k = len(twins)
    lml = np.array(
        [
            log_marginal_likelihood(
                TwinModel.of(t.spec).pymc_model(t.design), draws=draws, seed=seed
            )
            for t in twins
        ]
    )
    w = np.zeros(k)
    z = lml[inc, 0] - lml[inc, 0].max()
    w[inc] = np.exp(z) / np.exp(z).sum()
    sims = np.random.default_rng(seed).normal(lml[inc, 0], lml[inc, 1], size=(1000, len(inc)))
    ws = np.exp(sims - sims.max(axis=1, keepdims=True))
    ws /= ws.sum(axis=1, keepdims=True)
    q = np.zeros((2, k))
    q[:, inc] = np.quantile(ws, [0.05, 0.95], axis=0)
    return {"log_ml": lml[:, 0], "log_ml_se": lml[:, 1], "bma": w, "bma_q05": q[0], "bma_q95": q[1]}
