"""What a spec needs from a patient: the :class:`Design` (observation times and values, doses, inputs).

:func:`design_for` matches a patient's data to a spec (observables, routes,
units, forcing inputs); :class:`~twinbayes.model.twin_model.TwinModel` evaluates the
spec on a design.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..inputs.patient import Patient, PatientDataError
from ..inputs.units import UnitError
from ..spec.model_spec import ModelSpec
from .linear import Doses

__all__ = ["Design", "design_for", "describe_excluded"]


@dataclass(frozen=True)
class Design:
    """What a spec needs from a patient, in the spec's units.

    Attributes
    ----------
    times : dict
        Observation name -> observation times.
    values : dict
        Observation name -> observed values.
    doses : dict
        Route -> (dose times, amounts).
    excluded : tuple
        Observations left out as (name, time, value); see :func:`design_for`.
    inputs : dict
        Forcing input -> (times, values), interpolated linearly by the ODE engine.
    baselines : dict
        Baseline symbol -> value of its input at t = 0.
    covariates : dict
        The spec's covariates -> the patient's values, in the spec's units.
    """

    times: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    doses: Doses
    excluded: tuple[tuple[str, float, float], ...] = ()
    inputs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    covariates: dict[str, float] = field(default_factory=dict)

    def with_values(self, values: Mapping[str, np.ndarray]) -> Design:
        return replace(self, values={k: np.asarray(v, float) for k, v in values.items()})

    def input_at(self, name: str, t: np.ndarray) -> np.ndarray:
        """Forcing input ``name`` interpolated linearly at times ``t``."""
        kt, kv = self.inputs[name]
        return np.interp(t, kt, kv)

    @property
    def n_obs(self) -> int:
        return sum(len(t) for t in self.times.values())

    def structure_key(self) -> str:
        """SHA-256 of everything but the patient's values: observation times, doses, inputs,
        baselines and which covariates.  Two designs with one key share a compiled model."""
        h = hashlib.sha256()
        for name, t in self.times.items():
            h.update(f"obs:{name}".encode() + np.asarray(t, float).tobytes())
        for route, entry in sorted(self.doses.items()):
            h.update(f"dose:{route}".encode())
            for part in entry:
                h.update(np.asarray(part, float).tobytes() + b"|")
        for name, (kt, kv) in sorted(self.inputs.items()):
            h.update(f"input:{name}".encode() + np.asarray(kt, float).tobytes())
            h.update(np.asarray(kv, float).tobytes())
        for name, value in sorted(self.baselines.items()):
            h.update(f"baseline:{name}={float(value)!r}".encode())
        h.update(("covariates:" + ",".join(sorted(self.covariates))).encode())
        return h.hexdigest()

    def index(self) -> list[tuple[str, int]]:
        """(observable, position) of every observation, in the order used by pointwise results."""
        return [(name, i) for name, t in self.times.items() for i in range(len(t))]

    def split(self, holdout: np.ndarray) -> tuple[Design, Design]:
        """(training, held-out) designs for a boolean ``holdout`` over :meth:`index`."""
        holdout = np.asarray(holdout, bool)
        keep, start = {}, 0
        for name, t in self.times.items():
            keep[name] = ~holdout[start : start + len(t)]
            start += len(t)
        return self.subset(keep), self.subset({n: ~k for n, k in keep.items()})

    def subset(self, keep: Mapping[str, np.ndarray]) -> Design:
        """The design restricted to the observations selected by boolean masks ``keep[name]``."""
        names = [n for n in self.times if np.any(keep[n])]
        return replace(
            self,
            times={n: self.times[n][keep[n]] for n in names},
            values={n: self.values[n][keep[n]] for n in names if n in self.values},
        )


def design_for(spec: ModelSpec, patient: Patient) -> Design:
    """Match a patient's data to a spec: observables, routes and units.

    A linear spec (or a dosed nonlinear one whose initial values are 0) starts
    from zero amounts, so its prediction at or before
    the first dose is exactly zero whatever the parameters: such pre-dose
    samples carry no information about the twin, and a zero value there makes
    the likelihood unbounded as the additive error SD goes to zero.  They are
    left out of the design and listed in ``Design.excluded`` (name, time, value),
    which fitted twins report.  So are observations before an observation
    model's ``valid_from`` time (e.g. the mixing phase of an IVGTT, which the
    minimal model does not describe).

    Forcing inputs are read from the patient's series of the input's
    ``series`` name; the series must cover the observation times.

    Raises
    ------
    PatientDataError
        If the patient received doses by a route the spec does not model, or
        has none of the spec's observables.
    """
    unknown = [r for r in patient.routes if r not in spec.routes]
    if unknown:
        raise PatientDataError(
            f"patient {patient.label!r} ({patient.data.attrs.get('source')}) received doses by route(s) {unknown} "
            f"that spec {spec.name!r} ({spec.source}) does not model; its routes: {list(spec.routes)}"
        )
    used = set(spec.observations) | {i.series for i in spec.inputs.values()}
    unknown = [o for o in patient.observation_names if o not in used]
    if unknown:
        raise PatientDataError(
            f"patient {patient.label!r} ({Path(str(patient.data.attrs.get('source'))).name}) has observations "
            f"{unknown} that spec {spec.name!r} neither models nor uses as an input (names are case-sensitive); "
            f"rename them to one of {sorted(used)} or remove those rows"
        )
    names = [o for o in spec.observations if o in patient.observation_names]
    if not names:
        raise PatientDataError(
            f"patient {patient.label!r} has observations {patient.observation_names}, none of which spec "
            f"{spec.name!r} models ({list(spec.observations)})"
        )
    doses = {r: _doses(spec, patient, r) for r in patient.routes}
    first_dose = min((float(e[0].min()) for e in doses.values() if len(e[0])), default=np.inf)
    times, values, excluded = {}, {}, []
    for o in names:
        ob = spec.observations[o]
        t, y = patient.observations(o, ob.unit, spec.time_unit, ob.molar_mass)
        keep = t > first_dose if starts_from_zero(spec) else np.ones(len(t), bool)
        keep &= t >= spec.observations[o].valid_from
        excluded += [(o, float(ti), float(yi)) for ti, yi in zip(t[~keep], y[~keep])]
        if not keep.any():
            raise PatientDataError(
                f"patient {patient.label!r}: no {o!r} observation after the first dose; "
                f"spec {spec.name!r} starts from zero and predicts 0 before any dose"
            )
        times[o], values[o] = t[keep], y[keep]
    inputs, baselines = _forcing(spec, patient, max(float(t.max()) for t in times.values()))
    covariates = _covariates(spec, patient)
    return Design(times, values, doses, tuple(excluded), inputs, baselines, covariates)


def _doses(spec: ModelSpec, patient: Patient, route: str) -> tuple[np.ndarray, ...]:
    """(times, amounts) of the route's doses, with the infusion durations when any dose is an infusion."""
    r = spec.routes[route]
    t, amount = patient.doses(route, r.unit, spec.time_unit, r.molar_mass)
    duration = patient.infusion_durations(route, spec.time_unit)
    return (t, amount, duration) if np.any(duration > 0) else (t, amount)


def starts_from_zero(spec: ModelSpec) -> bool:
    """Whether every state is 0 until the first dose: linear specs, and dosed nonlinear specs whose
    initial values are all the constant 0 (their predictions before a dose carry no information)."""
    if spec.linear:
        return True
    if not spec.routes or spec.solution:
        return False
    return all(not e.symbols and float(e({})) == 0.0 for e in spec.initial.values())


def _covariates(spec: ModelSpec, patient: Patient) -> dict[str, float]:
    """The patient's value of every covariate the spec declares, in the spec's unit.

    Raises
    ------
    PatientDataError
        Naming the patient file, the covariate, its unit and how to add it, when the patient
        lacks one or gives it in a unit of another dimension.
    """
    source = Path(str(patient.data.attrs.get("source"))).name
    out = {}
    for c in spec.covariates.values():
        try:
            out[c.name] = patient.covariate(c.name, c.unit)
        except PatientDataError:
            have = [
                str(k).removeprefix("covariate_")
                for k in patient.data.data_vars
                if str(k).startswith("covariate_")
            ]
            raise PatientDataError(
                f"{source}: patient {patient.label!r} has no covariate {c.name!r}, which spec {spec.name!r} "
                f"uses ({c.description}, in {c.unit}); add a row 'SUBJECT,0,{patient.time_unit},covariate,"
                f"{c.name},VALUE,{c.unit}'. Covariates of this patient: {have or 'none'}"
            ) from None
        except UnitError as exc:
            raise PatientDataError(
                f"{source}: covariate {c.name!r} of patient {patient.label!r} cannot be converted to "
                f"the {c.unit!r} that spec {spec.name!r} expects ({exc})"
            ) from None
        if why := c.check(out[c.name]):
            raise PatientDataError(
                f"{source}: covariate {c.name!r} of patient {patient.label!r}: {why}, as spec "
                f"{spec.name!r} declares it (covariates.{c.name}); correct the patient's data"
            )
    return out


def _forcing(spec: ModelSpec, patient: Patient, t_end: float):
    """The spec's forcing inputs from the patient's series, checked to cover ``[0, t_end]``."""
    inputs, baselines = {}, {}
    for name, inp in spec.inputs.items():
        t, v = patient.series(inp.series, inp.unit, spec.time_unit, inp.molar_mass)
        if len(t) < 2 or t[0] > 0 or t[-1] < t_end:
            raise PatientDataError(
                f"patient {patient.label!r} ({patient.data.attrs.get('source')}): series {inp.series!r}, which drives input "
                f"{name!r} of spec {spec.name!r}, must cover 0 to {t_end:g} {spec.time_unit} (the last observation) "
                f"with at least two values; it has {len(t)} value(s) from {t.min() if len(t) else 'nan'} to "
                f"{t.max() if len(t) else 'nan'}. Add values at both ends (interpolation does not extrapolate)"
            )
        inputs[name] = (t, v)
        if inp.baseline:
            baselines[inp.baseline] = float(np.interp(0.0, t, v))
    return inputs, baselines


def describe_excluded(spec: ModelSpec, excluded) -> str:
    """Why observations were left out, counted by reason (``""`` when none were)."""
    early = sum(1 for name, t, _ in excluded if t < spec.observations[name].valid_from)
    predose = len(excluded) - early
    parts = [f"{predose} pre-dose observation(s) that the twin predicts as 0 by construction"] * (
        predose > 0
    ) + [f"{early} observation(s) before the model's valid_from time"] * (early > 0)
    return "left out " + " and ".join(parts) if parts else ""
