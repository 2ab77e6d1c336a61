"""Predictive draws of one fitted twin at any times, under its own doses or a scenario's.

The posterior predictive distribution :math:`p(\\tilde y \\mid y)` of one twin, drawn per
posterior draw (with its residual noise, or the noise-free means); the ensemble of several twins
is :func:`~twinbayes.decisions.ensemble.average_predictive`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xarray as xr

from ..dynamics.design import Design
from ..dynamics.linear import Doses
from ..model.twin_model import TwinModel
from ..spec.scenarios import Scenario
from .twin import Twin, posterior_draws

__all__ = ["predictive_draws", "check_forcing_covers"]


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
