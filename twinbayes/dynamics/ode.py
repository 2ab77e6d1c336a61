"""Numerical ODE solutions for nonlinear specs without a closed form (classical RK4).

The spec's right-hand sides are integrated with the classical fourth-order
Runge-Kutta scheme (Hairer, Nørsett & Wanner 1993, Solving Ordinary
Differential Equations I, sec. II.1) on a grid that contains every
requested time and splits each interval into equal steps no longer than the
spec's ``dynamics.max_step`` (default: 1/200 of the time span).  In PyTensor
the steps run in a ``scan``, so NUTS gets exact gradients of the discrete
solution; in NumPy the same steps run vectorised over posterior draws.

Accuracy is checked, not assumed: :func:`twinbayes.checks.check_ode_accuracy`
(``twinbayes specs check``) compares with SciPy's ``solve_ivp`` at tight
tolerances.  A stiff or exploding system gives non-finite values, which make
the log density ``-inf`` and are reported by the sampler as divergences.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec

__all__ = ["time_grid", "ode_trajectories"]


def time_grid(times: np.ndarray, max_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid from 0 through every time, each interval split into equal steps <= ``max_step``.

    Returns the grid and, for each time, its index in the grid.
    """
    times = np.asarray(times, float)
    knots = np.unique(np.concatenate([[0.0], times]))
    pieces = [knots[:1]]
    for a, b in zip(knots[:-1], knots[1:]):
        n = max(1, int(np.ceil((b - a) / max_step - 1e-9)))
        pieces.append(np.linspace(a, b, n + 1)[1:])
    grid = np.concatenate(pieces)
    return grid, np.searchsorted(grid, times)


def _default_step(spec: ModelSpec, times: np.ndarray) -> float:
    span = float(np.max(times)) if len(times) else 1.0
    return spec.max_step or max(span, 1e-12) / 200.0


def ode_trajectories(spec: ModelSpec, env: Mapping[str, Any], times: np.ndarray, states: list[str], backend=NUMPY) -> dict[str, Any]:
    """States at ``times`` from the initial values ``dynamics.initial`` at t = 0.

    With NumPy draw arrays in ``env`` (length S) the result has shape
    ``times.shape + (S,)``, like the exact solutions.
    """
    names = list(spec.states)
    grid, index = time_grid(times, _default_step(spec, times))
    if backend is PYTENSOR:
        return _rk4_pytensor(spec, env, names, grid, index, states)
    return _rk4_numpy(spec, env, names, grid, index, states)


def _rhs(spec, names, env, t, x, backend):
    e = {**env, **dict(zip(names, x)), "t": t}
    return [spec.rhs[s](e, backend) for s in names]


def _rk4_numpy(spec, env, names, grid, index, states):
    shape = np.broadcast_shapes(*(np.shape(v) for v in env.values()))  # () or (draws,)
    x = [np.broadcast_to(np.asarray(spec.initial[s](env), float), shape).copy() for s in names]
    out = np.empty((len(grid), len(names)) + shape)
    out[0] = x
    with np.errstate(all="ignore"):  # blow-ups become non-finite values, reported downstream
        for i, (t, h) in enumerate(zip(grid[:-1], np.diff(grid)), start=1):
            k1 = _rhs(spec, names, env, t, x, NUMPY)
            k2 = _rhs(spec, names, env, t + h / 2, [a + h / 2 * k for a, k in zip(x, k1)], NUMPY)
            k3 = _rhs(spec, names, env, t + h / 2, [a + h / 2 * k for a, k in zip(x, k2)], NUMPY)
            k4 = _rhs(spec, names, env, t + h, [a + h * k for a, k in zip(x, k3)], NUMPY)
            x = [a + h / 6 * (p + 2 * q + 2 * r + w) for a, p, q, r, w in zip(x, k1, k2, k3, k4)]
            out[i] = np.array(x)
    return {s: out[index, names.index(s)] for s in states}


def _rk4_pytensor(spec, env, names, grid, index, states):
    import pytensor
    import pytensor.tensor as pt

    outer = [v for v in env.values() if isinstance(v, pytensor.graph.basic.Variable)]

    def f(t, x):
        return pt.stack(_rhs(spec, names, env, t, [x[j] for j in range(len(names))], PYTENSOR))

    def step(t, h, x, *_):
        k1 = f(t, x)
        k2 = f(t + h / 2, x + h / 2 * k1)
        k3 = f(t + h / 2, x + h / 2 * k2)
        k4 = f(t + h, x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    x0 = pt.stack([pt.as_tensor(spec.initial[s](env, PYTENSOR), dtype="float64") for s in names])
    xs = pytensor.scan(
        step,
        sequences=[pt.as_tensor(grid[:-1]), pt.as_tensor(np.diff(grid))],
        outputs_info=[x0],
        non_sequences=outer,
        return_updates=False,
    )
    path = pt.concatenate([x0[None, :], xs], axis=0)
    return {s: path[index, names.index(s)] for s in states}
