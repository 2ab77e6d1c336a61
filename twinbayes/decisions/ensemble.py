"""The model-averaged ensemble of twins' predictive draws.

The ensemble predictive distribution is the mixture ``sum_k w_k p_k(y~ | y)``
of the twins' posterior predictive distributions (Yao et al. 2018, eq. 1):
each ensemble draw comes from twin ``k`` with probability ``w_k``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..dynamics.linear import Doses
from ..fitting.predictive import predictive_draws
from ..fitting.twin import Twin
from ..spec.scenarios import Scenario

__all__ = ["average_predictive"]


def average_predictive(
    twins: list[Twin],
    weights: Mapping[str, float],
    times=None,
    *,
    observable: str | None = None,
    doses: Doses | None = None,
    n_draws: int = 4000,
    seed: int = 0,
    scenario: Scenario | None = None,
) -> xr.Dataset:
    """Draws from the weighted mixture of the twins' posterior predictive distributions.

    Parameters
    ----------
    twins : list of Twin
    weights : mapping twin name -> weight
        E.g. ``Comparison.weights``; twins with zero or missing weight are skipped.
    times, observable, doses, scenario
        As in :func:`predictive_draws`.
    n_draws : int
        Ensemble draws; twin ``k`` contributes a multinomial share with probabilities ``w``.

    Returns
    -------
    xarray.Dataset
        ``ensemble`` (draw, time) and ``source`` (draw: the twin each draw came from).
    """
    w = np.array([float(weights.get(t.name, 0.0)) for t in twins])
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"weights must be >= 0 and sum to 1; got {dict(zip([t.name for t in twins], w))}"
        )
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_draws, w / w.sum())
    parts, source = [], []
    for i, (twin, c) in enumerate(zip(twins, counts)):
        if c == 0:
            continue
        d = predictive_draws(
            twin, times, observable=observable, doses=doses, seed=seed + 1 + i, scenario=scenario
        )
        pick = rng.choice(d.sizes["draw"], size=c, replace=c > d.sizes["draw"])
        parts.append(d.values[pick])
        source += [twin.name] * c
    values = np.concatenate(parts)
    t = d["time"].values
    return xr.Dataset(
        {"ensemble": (("draw", "time"), values), "source": ("draw", np.array(source))},
        coords={"time": t},
    )
