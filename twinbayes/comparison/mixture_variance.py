"""The law of total variance over a mixture of twins: within-twin and between-twin parts.

.. math::

    \\operatorname{Var} = \\sum_k w_k v_k + \\sum_k w_k (m_k - \\bar m)^2,
    \\quad \\bar m = \\sum_k w_k m_k,

``m_k`` and ``v_k`` the mean and variance of twin ``k``'s draws.
"""

from __future__ import annotations

import numpy as np

__all__ = ["between_share", "decompose", "share"]


def decompose(samples: list[np.ndarray], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-twin and between-twin variance of the mixture of ``samples`` (draws along axis 0)."""
    means = np.array([s.mean(axis=0) for s in samples])
    var = np.array([s.var(axis=0) for s in samples])
    w = w.reshape((-1,) + (1,) * (means.ndim - 1))
    grand = (w * means).sum(axis=0)
    return (w * var).sum(axis=0), (w * (means - grand) ** 2).sum(axis=0)


def share(samples: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Between-twin variance over the total (0 where the total is 0); :func:`between_share`."""
    within, between = decompose(samples, w)
    total = within + between
    return np.divide(between, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def between_share(samples: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    r"""Share of the mixture's predictive variance that comes from the twins disagreeing.

    .. math:: \frac{\sum_k w_k (m_k - \bar m)^2}{\sum_k w_k v_k + \sum_k w_k (m_k - \bar m)^2},
              \quad \bar m = \sum_k w_k m_k

    (law of total variance over the mixture ``sum_k w_k p_k``), from draws ``samples[k]``
    of twin ``k`` (draws along axis 0); 0 where the total variance is 0.
    """
    return share(samples, np.asarray(weights, float))
