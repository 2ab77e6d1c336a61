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
from .scenarios import Scenario

__all__ = ["predictive_draws", "average_predictive", "check_forcing_covers"]


def _design(
    twin: Twin, observable: str | None, times, doses: Doses | None, scenario: Scenario | None
) -> tuple[str, Design]:
    names = list(twin.design.times)
    observable = observable or names[0]
    if observable not in twin.spec.observations:
        raise ValueError(
            f"{twin.name} does not model {observable!r}; it models {list(twin.spec.observations)}"
        )
    if scenario is not None and doses is not None:
        raise ValueError("give doses or a scenario, not both")
    t = twin.design.times.get(observable) if times is None else np.asarray(times, float)
    design = replace(twin.design, times={observable: t}, values={}, excluded=())
    if doses is not None:
        design = replace(design, doses=doses)
    if scenario is not None:
        design = _under(scenario, twin, design)
    check_forcing_covers(design, float(np.max(t, initial=0.0)), twin.name)
    return observable, design


def _under(scenario: Scenario, twin: Twin, design: Design) -> Design:
    """``design`` with the scenario's doses and forcing series (baselines stay the patient's)."""
    inputs = scenario.to_inputs(twin.spec, design.inputs)
    return replace(design, doses=scenario.to_doses(twin.spec), inputs=inputs)


def check_forcing_covers(design: Design, t_end: float, twin: str) -> None:
    """Forcing inputs are interpolated, never extrapolated: they must span ``[0, t_end]``.

    Raises
    ------
    ValueError
        Naming the twin, the input, its span and the fix.
    """
    for name, (kt, _) in design.inputs.items():
        if kt[0] > 0 or kt[-1] < t_end:
            raise ValueError(
                f"{twin}: forcing input {name!r} is known from {kt[0]:g} to {kt[-1]:g}, but predictions "
                f"reach {t_end:g} (it is not extrapolated). Predict within its span, or give the "
                "series up to that time (a scenario's series times and values)"
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
    scenario: Scenario | None = None,
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
    scenario : Scenario, optional
        Doses and forcing series of an intervention (instead of ``doses``); a twin with
        ``[inputs]`` is simulated under the scenario's series; its baselines stay the patient's.

    Raises
    ------
    ValueError
        ``times`` beyond the span of a forcing input, or a scenario the twin cannot simulate.

    Returns
    -------
    xarray.DataArray
        Dimensions ``(draw, time)``.
    """
    observable, design = _design(twin, observable, times, doses, scenario)
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
