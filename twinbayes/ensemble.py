"""Predictive draws of a twin at any times, and the model-averaged ensemble.

The ensemble predictive distribution is the mixture ``sum_k w_k p_k(y~ | y)``
of the twins' posterior predictive distributions (Yao et al. 2018, eq. 1):
each ensemble draw comes from twin ``k`` with probability ``w_k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import xarray as xr

from .dynamics.design import Design
from .dynamics.linear import Doses
from .fitting import Twin, posterior_draws
from .model import TwinModel

__all__ = ["predictive_draws", "average_predictive"]


def _design(twin: Twin, observable: str | None, times, doses: Doses | None) -> tuple[str, Design]:
    names = list(twin.design.times)
    observable = observable or names[0]
    if observable not in twin.spec.observations:
        raise ValueError(
            f"{twin.name} does not model {observable!r}; it models {list(twin.spec.observations)}"
        )
    t = twin.design.times.get(observable) if times is None else np.asarray(times, float)
    return observable, replace(
        twin.design,
        times={observable: t},
        values={},
        doses=twin.design.doses if doses is None else doses,
        excluded=(),
    )


def predictive_draws(
    twin: Twin,
    times=None,
    *,
    observable: str | None = None,
    doses: Doses | None = None,
    n_draws: int | None = None,
    seed: int = 0,
    mean: bool = False,
) -> xr.DataArray:
    """Posterior predictive draws of an observable at ``times`` (default: the observed times).

    Parameters
    ----------
    twin : Twin
    times : array, optional
        In the spec's time unit; may extend beyond the data (forecast).
    observable : str, optional
        Default: the twin's first observable.
    doses : mapping route -> (times, amounts), optional
        Another dosing history (default: the patient's).
    n_draws : int, optional
        Use a seeded random subset of posterior draws.
    seed : int
    mean : bool
        Return the predicted mean (no residual error) instead of new observations.

    Returns
    -------
    xarray.DataArray
        Dimensions ``(draw, time)``.
    """
    observable, design = _design(twin, observable, times, doses)
    params = posterior_draws(twin, n_draws, seed)
    model = TwinModel.of(twin.spec)
    if mean:
        values = model.means(params, design)[observable]
    else:
        values = model.simulate(params, design, np.random.default_rng(seed))[observable]
    return xr.DataArray(
        values,
        dims=("draw", "time"),
        coords={"time": design.times[observable]},
        name=observable,
        attrs={"twin": twin.name, "unit": twin.spec.observations[observable].unit},
    )


def average_predictive(
    twins: list[Twin],
    weights: Mapping[str, float],
    times=None,
    *,
    observable: str | None = None,
    doses: Doses | None = None,
    n_draws: int = 4000,
    seed: int = 0,
) -> xr.Dataset:
    """Draws from the weighted mixture of the twins' posterior predictive distributions.

    Parameters
    ----------
    twins : list of Twin
    weights : mapping twin name -> weight
        E.g. ``Comparison.weights``; twins with zero or missing weight are skipped.
    times, observable, doses
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
        d = predictive_draws(twin, times, observable=observable, doses=doses, seed=seed + 1 + i)
        pick = rng.choice(d.sizes["draw"], size=c, replace=c > d.sizes["draw"])
        parts.append(d.values[pick])
        source += [twin.name] * c
    values = np.concatenate(parts)
    t = d["time"].values
    return xr.Dataset(
        {"ensemble": (("draw", "time"), values), "source": ("draw", np.array(source))},
        coords={"time": t},
    )
