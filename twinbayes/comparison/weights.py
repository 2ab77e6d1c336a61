"""Weights of twins from their pointwise elpd (Yao, Vehtari, Simpson & Gelman 2018, Bayesian Analysis 13:917-1007).

Stacking of predictive distributions, pseudo-BMA+ (Bayesian-bootstrap
regularised Akaike-type weights), and the Bayesian-bootstrap distribution of
the stacking weights (their uncertainty from the finite number of observations).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, minimize
from scipy.stats import dirichlet

__all__ = [
    "stacking_weights",
    "pseudo_bma_plus_weights",
    "bootstrap_stacking_weights",
    "bayesian_stacking_weights",
]


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
    dens = np.exp(
        elpd_i - elpd_i.max(axis=1, keepdims=True)
    )  # row scaling does not move the optimum

    def objective(w):
        return -np.sum(a * np.log(dens @ w))

    def gradient(w):
        return -np.sum(a[:, None] * dens / (dens @ w)[:, None], axis=0)

    res = minimize(
        objective,
        np.full(k, 1.0 / k),
        jac=gradient,
        bounds=Bounds(np.zeros(k), np.ones(k)),
        constraints=LinearConstraint(np.ones(k), 1.0, 1.0),
    )
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def pseudo_bma_plus_weights(
    elpd_i: np.ndarray, n_bootstrap: int = 1000, seed: int = 124
) -> tuple[np.ndarray, np.ndarray]:
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


def bootstrap_stacking_weights(
    elpd_i: np.ndarray, n_bootstrap: int = 200, seed: int = 0
) -> np.ndarray:
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


def bayesian_stacking_weights(
    elpd_i: np.ndarray,
    draws: int = 4000,
    seed: int = 0,
    alpha: float = 1.0,
    chains: int = 40,
    burn: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of the stacking weights under a Dirichlet prior: honest at few observations.

    Stacking maximises ``sum_i log sum_k w_k p_ik`` with ``p_ik = exp(elpd_ik)``, the
    log-likelihood of a mixture whose components are the twins' leave-one-out predictive
    densities (Yao, Vehtari, Simpson & Gelman 2018, eq. 4).  With a ``Dirichlet(alpha)`` prior on
    ``w`` the same expression is a likelihood, and its posterior

    .. math::

        p(w \\mid y) \\propto \\prod_{i=1}^n \\sum_k w_k\\, p_{ik} \\cdot \\prod_k w_k^{\\alpha - 1}

    is the full-Bayes version of stacking (as in Bayesian hierarchical stacking, Yao, Pirš,
    Vehtari & Gelman 2022, Bayesian Analysis 17(4):1043-1071, without the hierarchy).  Its mean is
    the point weight: on many observations it converges to the stacking optimum; on a handful it
    stays away from the simplex's corners unless the data put it there, where the optimum (and
    the Bayesian bootstrap of it) says 1.00 (1.00-1.00) on 7 points.  Sampled exactly by Gibbs
    with the mixture's allocations (Diebolt & Robert 1994, JRSS B 56:363-375): ``z_i ~
    Categorical(w_k p_ik)``, ``w ~ Dirichlet(alpha + counts)``, in ``chains`` independent chains
    started from the prior and run side by side (the allocation sampler mixes slowly where the
    twins predict alike; many short chains cover the posterior better than one long one).

    Parameters
    ----------
    elpd_i : numpy.ndarray
        Pointwise elpd, (observations, twins).
    draws : int
        Draws kept, over all chains.
    seed : int
    alpha : float
        The Dirichlet prior's concentration (1: uniform on the simplex).
    chains, burn : int
        Independent Gibbs chains, and the iterations each discards.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The posterior mean weights (twins,) and the draws (draws, twins).
    """
    elpd_i = np.asarray(elpd_i, float)
    n, k = elpd_i.shape
    p = np.exp(elpd_i - elpd_i.max(axis=1, keepdims=True))  # rows rescaled: same allocations
    rng = np.random.default_rng(seed)
    per_chain = -(-draws // chains)
    w = rng.dirichlet(np.full(k, alpha), size=chains)  # (chains, twins)
    out = np.empty((per_chain, chains, k))
    for it in range(burn + per_chain):
        prob = p[None] * w[:, None, :]  # (chains, n, twins)
        cum = np.cumsum(prob, axis=2)
        u = rng.uniform(size=(chains, n, 1)) * cum[:, :, -1:]
        z = np.minimum((u > cum).sum(axis=2), k - 1)  # (chains, n)
        counts = (z[:, :, None] == np.arange(k)).sum(axis=1)
        w = rng.standard_gamma(alpha + counts)
        w /= w.sum(axis=1, keepdims=True)
        if it >= burn:
            out[it - burn] = w
    flat = out.reshape(-1, k)[:draws]
    return flat.mean(axis=0), flat
