"""Simulated patients: data drawn from a spec with known parameters.

For parameter-recovery studies (Talts et al. 2018, "Validating Bayesian
inference algorithms with simulation-based calibration", arXiv:1804.06788)
and for trying a study design before the data exist.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..dynamics.design import Design
from ..dynamics.linear import Doses
from ..inputs.patient import Patient
from ..spec.model_spec import ModelSpec
from .twin_model import TwinModel

__all__ = ["simulate_patient"]


def simulate_patient(
    spec: ModelSpec,
    params: Mapping[str, float],
    times: np.ndarray,
    doses: Doses,
    seed: int,
    subject: str = "simulated",
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    covariates: Mapping[str, float] | None = None,
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
    subject : str
    inputs : mapping, optional
        Forcing input -> (times, values) in the spec's units, for specs with
        ``[inputs]``; written to the patient as ``input`` rows.
    covariates : mapping, optional
        A value (in the spec's unit) for every ``[covariates]`` entry of the spec; written to
        the patient as ``covariate`` rows.
    """
    covariates = dict(covariates or {})
    missing = set(spec.covariates) - set(covariates)
    if missing:
        raise ValueError(
            f"simulate_patient: spec {spec.name} uses covariate(s) {sorted(missing)}; pass covariates={{name: value}}"
        )
    missing = set(spec.parameters) - set(params)
    if missing:
        raise ValueError(
            f"simulate_patient: no value for parameter(s) {sorted(missing)} of spec {spec.name}"
        )
    times = np.asarray(times, float)
    inputs = {
        k: (np.asarray(t, float), np.asarray(v, float)) for k, (t, v) in (inputs or {}).items()
    }
    missing = set(spec.inputs) - set(inputs)
    if missing:
        raise ValueError(
            f"simulate_patient: spec {spec.name} is driven by input(s) {sorted(missing)}; pass inputs={{name: (times, values)}}"
        )
    baselines = {
        i.baseline: float(np.interp(0.0, *inputs[n])) for n, i in spec.inputs.items() if i.baseline
    }
    design = Design(
        {o: times for o in spec.observations},
        {},
        doses,
        inputs=inputs,
        baselines=baselines,
        covariates={c: float(covariates[c]) for c in spec.covariates},
    )
    y = TwinModel.of(spec).simulate(params, design, np.random.default_rng(seed))
    obs = [(t, o, v, spec.observations[o].unit) for o in y for t, v in zip(times, y[o])]
    dose_rows = [
        (t, r, a, spec.routes[r].unit) for r, (ts, amts) in doses.items() for t, a in zip(ts, amts)
    ]
    input_rows = [
        (t, spec.inputs[n].series, v, spec.inputs[n].unit)
        for n, (ts, vs) in inputs.items()
        for t, v in zip(ts, vs)
    ]
    return Patient.from_records(
        obs,
        dose_rows,
        inputs=input_rows,
        time_unit=spec.time_unit,
        subject=subject,
        source=f"simulated from {spec.name}",
        covariates={c: (float(covariates[c]), spec.covariates[c].unit) for c in spec.covariates},
    )
