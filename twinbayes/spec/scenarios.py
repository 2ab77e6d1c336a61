"""Interventions expressed as data: dose regimens, infusions, changes of regimen and of forcing.

A :class:`Scenario` is a named list of :class:`Dose` records and of
:class:`SeriesChange` records.  Build one with :meth:`Scenario.regimen` (``n``
doses every ``interval``; a ``duration`` makes them infusions), join regimens
with :meth:`Scenario.switch` (a change of regimen at time ``t``) or ``+`` (both
at once).  Amounts are converted to each spec's route unit, times to its time
unit.  A :class:`SeriesChange` replaces or scales a measured series that drives
twins with ``[inputs]`` (e.g. plasma insulin in the glucose minimal model): the
intervention on a forced twin is a different forcing, ``u(t) -> u'(t)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..inputs.units import conversion_factor

if TYPE_CHECKING:  # annotations only: a scenario is vocabulary, below the model and its dynamics
    from ..dynamics.linear import Doses
    from .model_spec import ModelSpec

__all__ = ["Dose", "SeriesChange", "Scenario", "MAX_DOSES"]

MAX_DOSES = 10_000
"""Most doses in one scenario (a billion doses used to exhaust memory)."""


@dataclass(frozen=True)
class Dose:
    """One dose: ``amount`` (in ``unit``) by ``route`` at ``time``; ``duration`` > 0 for an infusion."""

    time: float
    amount: float
    route: str
    unit: str = "mg"
    duration: float = 0.0

    def __post_init__(self):
        if not np.isfinite(self.time) or self.time < 0:
            raise ValueError(f"dose time must be >= 0, got {self.time}")
        if not self.amount > 0:
            raise ValueError(f"dose amount must be > 0, got {self.amount}")
        if not self.duration >= 0:
            raise ValueError(f"infusion duration must be >= 0, got {self.duration}")


Forcing = dict[str, tuple[np.ndarray, np.ndarray]]
"""Spec input name -> (knot times, values), in the spec's units, interpolated linearly."""


@dataclass(frozen=True)
class SeriesChange:
    """A changed forcing series: ``u'(t) = scale * u(t)``, or ``u'`` given by its own knots.

    Parameters
    ----------
    series : str
        The series' name in the patient data (``[inputs.X] series`` of a spec), e.g. ``"insulin"``.
    scale : float
        Multiplies the patient's own series (``times``/``values`` not given).
    times, values : tuple of float
        The series under the scenario (at least two knots, strictly increasing times in the
        scenario's time unit), interpolated linearly like a measured series; ``unit`` is the
        values' unit.

    Notes
    -----
    A spec's baseline symbol (``[inputs.X] baseline``, e.g. basal insulin ``Ib`` in the
    minimal model's ``I - Ib``) is the patient's: the measured series' value at ``t = 0``.
    It does not follow the changed series: a clamp raises plasma insulin above the
    patient's basal level, it does not move that level.
    """

    series: str
    scale: float = 1.0
    times: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    unit: str = ""

    def __post_init__(self):
        if not np.isfinite(self.scale) or self.scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {self.scale}")
        if not self.times and not self.values:
            return
        t, v = np.asarray(self.times, float), np.asarray(self.values, float)
        if t.ndim != 1 or t.shape != v.shape or len(t) < 2:
            raise ValueError("times and values must be lists of one length, at least 2")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
            raise ValueError("times and values must be finite numbers")
        if np.any(np.diff(t) <= 0):
            raise ValueError("times must increase strictly")
        if self.scale != 1.0:
            raise ValueError("give either scale or times and values, not both")
        if not self.unit:
            raise ValueError("values need a unit (the series' unit, e.g. 'uU/mL')")

    def apply(self, spec: ModelSpec, name: str, knots: tuple, time_unit: str) -> tuple:
        """Input ``name`` of ``spec`` under this change; ``knots`` is the patient's (spec units)."""
        if not self.times:
            kt, kv = knots
            return np.asarray(kt, float), self.scale * np.asarray(kv, float)
        inp = spec.inputs[name]
        fv = conversion_factor(self.unit, inp.unit, inp.molar_mass)
        ft = conversion_factor(time_unit, spec.time_unit)
        return ft * np.asarray(self.times, float), fv * np.asarray(self.values, float)


@dataclass(frozen=True)
class Scenario:
    """A named scenario: doses and changed forcing series (times in ``time_unit``)."""

    name: str
    doses: tuple[Dose, ...] = field(default_factory=tuple)
    time_unit: str = "h"
    series: tuple[SeriesChange, ...] = ()

    def __post_init__(self):
        names = [c.series for c in self.series]
        if len(set(names)) < len(names):
            raise ValueError(f"scenario {self.name!r} changes a series twice: {names}")

    @classmethod
    def regimen(
        cls,
        name: str,
        amount: float,
        route: str,
        *,
        interval: float | None = None,
        n_doses: int = 1,
        start: float = 0.0,
        duration: float = 0.0,
        unit: str = "mg",
        time_unit: str = "h",
    ) -> Scenario:
        """``n_doses`` doses of ``amount`` every ``interval`` from ``start`` (infusions if ``duration`` > 0)."""
        if n_doses < 1:
            raise ValueError("n_doses must be >= 1")
        if n_doses > 1 and not (interval and interval > 0):
            raise ValueError("repeated dosing needs an interval > 0")
        if duration and n_doses > 1 and duration > interval:
            raise ValueError(f"infusion duration {duration} exceeds the dosing interval {interval}")
        doses = tuple(
            Dose(start + i * (interval or 0.0), amount, route, unit, duration)
            for i in range(n_doses)
        )
        return cls(name, doses, time_unit)

    def switch(self, at: float, other: Scenario, name: str | None = None) -> Scenario:
        """This scenario's doses before ``at``, then ``other``'s doses from ``at`` on (a change of regimen)."""
        if other.time_unit != self.time_unit:
            raise ValueError("scenarios to join must use the same time unit")
        if self.series or other.series:
            raise ValueError(
                "switch() joins dose regimens; to change a series from a time on, give the "
                "changed series by its knots (SeriesChange times and values)"
            )
        doses = tuple(d for d in self.doses if d.time < at) + tuple(
            d for d in other.doses if d.time >= at
        )
        return Scenario(name or f"{self.name} -> {other.name} at {at:g}", doses, self.time_unit)

    def __add__(self, other: Scenario) -> Scenario:
        if other.time_unit != self.time_unit:
            raise ValueError("scenarios to join must use the same time unit")
        return Scenario(
            f"{self.name} + {other.name}",
            tuple(sorted(self.doses + other.doses, key=lambda d: d.time)),
            self.time_unit,
            self.series + other.series,
        )

    def to_doses(self, spec: ModelSpec) -> Doses:
        """Route -> (times, amounts, durations) in the spec's units."""
        out: dict[str, tuple[list, list, list]] = {}
        ft = conversion_factor(self.time_unit, spec.time_unit)
        for d in self.doses:
            if d.route not in spec.routes:
                raise ValueError(
                    f"scenario {self.name!r} doses by route {d.route!r}, which spec {spec.name} lacks ({list(spec.routes)})"
                )
            t, a, dur = out.setdefault(d.route, ([], [], []))
            t.append(d.time * ft)
            r = spec.routes[d.route]
            a.append(d.amount * conversion_factor(d.unit, r.unit, r.molar_mass))
            dur.append(d.duration * ft)
        return {r: tuple(np.array(v, float) for v in vals) for r, vals in out.items()}

    def to_inputs(self, spec: ModelSpec, forcing: Forcing | None) -> Forcing:
        """The spec's forcing inputs under this scenario (spec units).

        ``forcing`` is the patient's (``Design.inputs``); ``None`` only checks that every
        changed series drives ``spec`` and that units convert.

        Raises
        ------
        ValueError
            A changed series that drives none of the spec's inputs (the twin could not
            answer the scenario), or values in a unit that does not convert.
        """
        by_series = {inp.series: name for name, inp in spec.inputs.items()}
        out = dict(forcing or {})
        for change in self.series:
            if change.series not in by_series:
                raise ValueError(
                    f"scenario {self.name!r} changes series {change.series!r}, which drives no "
                    f"input of spec {spec.name} (its inputs follow: {sorted(by_series) or 'none'})"
                )
            name = by_series[change.series]
            if forcing is None:
                _check_unit(self.name, change, spec, name)
                continue
            out[name] = change.apply(spec, name, forcing[name], self.time_unit)
        return out


def _check_unit(scenario: str, change: SeriesChange, spec: ModelSpec, name: str) -> None:
    """A given series' values must convert to the unit of the input they drive."""
    if not change.times:
        return
    inp = spec.inputs[name]
    try:
        conversion_factor(change.unit, inp.unit, inp.molar_mass)
    except ValueError as exc:
        raise ValueError(
            f"scenario {scenario!r} gives series {change.series!r} in {change.unit!r}, which input "
            f"{name!r} of spec {spec.name} ({inp.unit}) cannot take ({exc}); give the values in {inp.unit}"
        ) from None
