"""Simulated patients: data drawn from a spec with known parameters.

For parameter-recovery studies (Talts et al. 2018, "Validating Bayesian
inference algorithms with simulation-based calibration", arXiv:1804.06788)
and for trying a study design before the data exist.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .dynamics.linear import Doses
from .dynamics.predict import Design, simulate_observations
from .patient import Patient
from .spec.model_spec import ModelSpec

__all__ = ["simulate_patient"]


def simulate_patient(
    spec: ModelSpec,
    params: Mapping[str, float],
    times: np.ndarray,
    doses: Doses,
    seed: int,
    subject: str = "simulated",
) -> Patient:
    """A patient whose observations are drawn from ``spec`` with ``params``.

    Parameters
    ----------
    spec : ModelSpec
    params : mapping
        Values for every parameter of the spec.
    times : ndarray
        Observation times (spec time unit), used for every observable.
    doses : mapping
        Route -> (times, amounts), in the spec's units.
    seed : int
        Seeds the residual errors.
    """
    missing = set(spec.parameters) - set(params)
    if missing:
        raise ValueError(f"simulate_patient: no value for parameter(s) {sorted(missing)} of spec {spec.name}")
    times = np.asarray(times, float)
    design = Design({o: times for o in spec.observations}, {}, doses)
    y = simulate_observations(spec, params, design, np.random.default_rng(seed))
    obs = [(t, o, v, spec.observations[o].unit) for o in y for t, v in zip(times, y[o])]
    dose_rows = [(t, r, a, spec.routes[r].unit) for r, (ts, amts) in doses.items() for t, a in zip(ts, amts)]
    return Patient.from_records(obs, dose_rows, time_unit=spec.time_unit, subject=subject, source=f"simulated from {spec.name}")
