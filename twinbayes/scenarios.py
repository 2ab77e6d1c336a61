"""Interventions expressed as data: dose regimens, infusions and changes of regimen.

A :class:`Scenario` is a named list of :class:`Dose` records.  Build one with
:meth:`Scenario.regimen` (``n`` doses every ``interval``; a ``duration`` makes
them infusions), join regimens with :meth:`Scenario.switch` (a change of
regimen at time ``t``) or ``+`` (both at once).  Amounts are converted to each
spec's route unit, times to its time unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dynamics.linear import Doses
from .spec.model_spec import ModelSpec
from .units import conversion_factor

__all__ = ["Dose", "Scenario", "MAX_DOSES"]

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


@dataclass(frozen=True)
class Scenario:
    """A named dosing scenario (all doses, in time units of ``time_unit``)."""

    name: str
    doses: tuple[Dose, ...] = field(default_factory=tuple)
    time_unit: str = "h"

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
