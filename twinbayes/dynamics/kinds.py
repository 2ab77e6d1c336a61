"""How a spec's states evolve: one strategy per kind of dynamics.

A spec's states at given times come from exactly one of

* :class:`ClosedForm` -- the spec's ``dynamics.solution``, a trajectory in ``t``
  (e.g. a tumour growth law);
* :class:`LinearExact` -- the exact solution of a linear compartment system with
  dose superposition (closed-form unit-dose responses or the matrix exponential,
  :mod:`twinbayes.dynamics.linear`);
* :class:`OdeSolution` -- the adaptive Dormand-Prince solve of a nonlinear ODE with
  forward sensitivities (:mod:`twinbayes.dynamics.ode`).

:func:`dynamics_for` picks the strategy once, when the model is built; nothing
downstream asks which kind it has.  Each strategy answers :meth:`states_at`
with the same conventions: with NumPy draw arrays in ``env`` (length S) each
state has shape ``times.shape + (S,)``; with PyTensor variables, ``times.shape``.
A new kind of dynamics is a new class here plus a branch in :func:`dynamics_for`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..spec.expr import NUMPY
from ..spec.model_spec import ModelSpec
from .linear import Doses, state_amounts

__all__ = ["Dynamics", "ClosedForm", "LinearExact", "OdeSolution", "dynamics_for"]

Inputs = Mapping[str, tuple[np.ndarray, np.ndarray]]


CHUNK_ELEMENTS = 1 << 19
"""Elements per temporary array when evaluating draws in chunks (4 MB of float64: cache-sized)."""


def in_draw_chunks(fn, env: Mapping[str, Any], per_draw: int) -> dict[str, np.ndarray]:
    """``fn(env)`` evaluated on chunks of the posterior draws and joined on the last axis.

    Superposition builds ``(times, draws)`` temporaries for each dose; for thousands of draws
    they outgrow the cache and the evaluation is bound by memory bandwidth.  Chunks of
    draws keep them in cache.  Every element is computed exactly as without chunks (elementwise
    operations and sums over doses only), so results are bit-identical.
    """
    sizes = {np.size(v) for v in env.values() if np.ndim(v) > 0}
    if len(sizes) != 1:
        return fn(env)
    n = sizes.pop()
    step = max(1, CHUNK_ELEMENTS // max(per_draw, 1))
    if step >= n:
        return fn(env)
    parts = [
        fn({k: v[i : i + step] if np.ndim(v) > 0 else v for k, v in env.items()})
        for i in range(0, n, step)
    ]
    return {s: np.concatenate([p[s] for p in parts], axis=-1) for s in parts[0]}


class Dynamics(Protocol):
    """What the model needs of a kind of dynamics."""

    spec: ModelSpec

    def states_at(
        self,
        env: Mapping[str, Any],
        times: np.ndarray,
        doses: Doses,
        states: list[str],
        backend: Any,
        inputs: Inputs,
    ) -> dict[str, Any]:
        """Values of ``states`` at ``times`` given parameters/derived values ``env``, doses and forcing inputs."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class ClosedForm:
    """``x(t)`` written out in the spec (``dynamics.solution``); no doses, no inputs."""

    spec: ModelSpec

    def states_at(self, env, times, doses, states, backend=NUMPY, inputs=None):
        batched = backend is NUMPY and any(np.ndim(v) > 0 for v in env.values())
        t = np.asarray(times, float)[:, None] if batched else np.asarray(times, float)
        return {s: self.spec.solution[s]({**env, "t": t}, backend) for s in states}


@dataclass(frozen=True)
class LinearExact:
    """``dx/dt = A x`` with doses: exact superposition of unit-dose responses."""

    spec: ModelSpec

    def states_at(self, env, times, doses, states, backend=NUMPY, inputs=None):
        if backend is not NUMPY:
            return state_amounts(self.spec, env, times, doses, states, backend)
        # draws are superposed one dose at a time (linear._superpose_by_dose): temporaries of
        # (times, draws), a few per dose; for ~300 times, chunks of ~900 draws keep them in cache
        per_draw = np.size(times) * 2
        return in_draw_chunks(
            lambda e: state_amounts(self.spec, e, times, doses, states, backend), env, per_draw
        )


@dataclass(frozen=True)
class OdeSolution:
    """A nonlinear ODE from ``dynamics.initial`` at t = 0, solved numerically (forcing inputs allowed)."""

    spec: ModelSpec

    def states_at(self, env, times, doses, states, backend=NUMPY, inputs=None):
        from .ode import ode_trajectories

        return ode_trajectories(self.spec, env, times, states, backend, inputs, doses)


def dynamics_for(spec: ModelSpec) -> Dynamics:
    """The strategy for ``spec``: closed form if given, else linear exact if declared linear, else an ODE solve."""
    if spec.solution:
        return ClosedForm(spec)
    if spec.linear:
        return LinearExact(spec)
    return OdeSolution(spec)
