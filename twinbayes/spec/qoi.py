"""Quantities of interest (QoI) computed from predicted trajectories, and decision targets.

Each QoI maps trajectories ``y`` of shape ``(draws, times)`` on a time grid
``t`` to one value per draw.  Window QoIs (``Cmax``, ``AUC``, time in range,
...) use the grid points inside the window; the grid is refined by the caller
(:func:`twinbayes.decisions.twin_disagreement.disagreement` adds every window bound and
evaluation time), so Cmax/Tmax are exact at grid resolution and AUC is the
trapezoid rule on the grid.  A :class:`Custom` QoI combines others through a
safe expression (the spec compiler's whitelist).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .expr import compile_expression

__all__ = [
    "ValueAt",
    "Cmax",
    "Tmax",
    "AUC",
    "TimeInRange",
    "TimeAbove",
    "TimeBelow",
    "StaysInRange",
    "Exceeds",
    "Custom",
    "Target",
]


def _window(t: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    a, b = window
    if not a < b:
        raise ValueError(f"window {window}: start must be before end")
    sel = (t >= a - 1e-12) & (t <= b + 1e-12)
    if sel.sum() < 2:
        raise ValueError(f"window {window} holds fewer than 2 grid times; extend the time grid")
    return sel


def _trapezoid_fraction(t, inside):
    """Time spent where ``inside`` (draws, times) holds, by the trapezoid rule on the grid."""
    dt = np.diff(t)
    return ((inside[:, 1:].astype(float) + inside[:, :-1]) * 0.5 * dt).sum(axis=1)


@dataclass(frozen=True)
class ValueAt:
    """The predicted value at time ``at``."""

    at: float
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "name", self.name or f"value_at_{self.at:g}")

    def required_times(self):
        return [self.at]

    def __call__(self, t, y):
        i = int(np.argmin(np.abs(t - self.at)))
        if abs(t[i] - self.at) > 1e-9:
            raise ValueError(f"{self.name}: time {self.at} is not on the grid")
        return y[:, i]


class _Windowed:
    """QoIs evaluated over ``self.window`` need its bounds on the grid."""

    def required_times(self):
        return list(self.window)


@dataclass(frozen=True)
class _WindowQoI(_Windowed):
    window: tuple[float, float]
    name: str = ""


@dataclass(frozen=True)
class Cmax(_WindowQoI):
    """Maximum of the trajectory over the window."""

    def __call__(self, t, y):
        return y[:, _window(t, self.window)].max(axis=1)


@dataclass(frozen=True)
class Tmax(_WindowQoI):
    """Time of the maximum over the window."""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return t[sel][np.argmax(y[:, sel], axis=1)]


@dataclass(frozen=True)
class AUC(_WindowQoI):
    """Area under the trajectory over the window (trapezoid rule on the grid)."""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return np.trapezoid(y[:, sel], t[sel], axis=1)


@dataclass(frozen=True)
class TimeInRange(_Windowed):
    """Time within ``[lower, upper]`` during the window."""

    lower: float
    upper: float
    window: tuple[float, float]
    name: str = ""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return _trapezoid_fraction(t[sel], (y[:, sel] >= self.lower) & (y[:, sel] <= self.upper))


@dataclass(frozen=True)
class TimeAbove(_Windowed):
    """Time above ``threshold`` during the window."""

    threshold: float
    window: tuple[float, float]
    name: str = ""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return _trapezoid_fraction(t[sel], y[:, sel] > self.threshold)


@dataclass(frozen=True)
class TimeBelow(_Windowed):
    """Time below ``threshold`` during the window."""

    threshold: float
    window: tuple[float, float]
    name: str = ""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return _trapezoid_fraction(t[sel], y[:, sel] < self.threshold)


@dataclass(frozen=True)
class StaysInRange(_Windowed):
    """1 if the trajectory stays within ``[lower, upper]`` throughout the window, else 0."""

    lower: float
    upper: float
    window: tuple[float, float]
    name: str = ""

    def __call__(self, t, y):
        sel = _window(t, self.window)
        return np.all((y[:, sel] >= self.lower) & (y[:, sel] <= self.upper), axis=1).astype(float)


@dataclass(frozen=True)
class Exceeds(_Windowed):
    """1 if the trajectory exceeds ``threshold`` at some time in the window, else 0."""

    threshold: float
    window: tuple[float, float]
    name: str = ""

    def __call__(self, t, y):
        return (y[:, _window(t, self.window)].max(axis=1) > self.threshold).astype(float)


@dataclass(frozen=True)
class Custom:
    """A user-defined QoI: a safe expression over other QoIs, e.g. ``"auc / cmax"``.

    Parameters
    ----------
    name : str
    expression : str
        Whitelisted expression (see :mod:`twinbayes.spec.expr`) over ``inputs``' names.
    inputs : dict
        Name -> QoI.
    """

    name: str
    expression: str
    inputs: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(
            self,
            "_expr",
            compile_expression(self.expression, set(self.inputs), f"QoI {self.name!r}"),
        )

    def required_times(self):
        return [x for q in self.inputs.values() for x in q.required_times()]

    def __call__(self, t, y):
        values = {k: q(t, y) for k, q in self.inputs.items()}
        return np.broadcast_to(np.asarray(self._expr(values), float), (y.shape[0],))

    def __hash__(self):
        return hash((self.name, self.expression))


def qoi_name(q) -> str:
    """A QoI's display name (its ``name`` or a description built from its fields)."""
    if getattr(q, "name", ""):
        return q.name
    fields = {k: v for k, v in vars(q).items() if k != "name" and not k.startswith("_")}
    return f"{type(q).__name__}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


@dataclass(frozen=True)
class Target:
    """A decision criterion: the QoI lies within ``[lower, upper]`` (either bound optional)."""

    qoi: object
    lower: float | None = None
    upper: float | None = None
    name: str = ""

    def __post_init__(self):
        if self.lower is None and self.upper is None:
            raise ValueError("a target needs a lower or an upper bound")
        if not self.name:
            lo = "" if self.lower is None else f"{self.lower:g} <= "
            hi = "" if self.upper is None else f" <= {self.upper:g}"
            object.__setattr__(self, "name", f"{lo}{qoi_name(self.qoi)}{hi}")

    def meets(self, values: np.ndarray) -> np.ndarray:
        ok = np.ones(values.shape, bool)
        if self.lower is not None:
            ok &= values >= self.lower
        if self.upper is not None:
            ok &= values <= self.upper
        return ok
