"""Exact solutions of linear compartment systems with dose superposition.

For ``dx/dt = A x`` with bolus doses ``D_k`` given at times ``t_k`` into state
``c`` (after a lag ``t_lag``, with bioavailability ``F``), linearity gives

.. math::

    x(t) = \\sum_k F D_k \\, G(t - t_k - t_{lag}) \\, \\mathbb{1}[t > t_k + t_{lag}],
    \\qquad G(\\tau) = e^{A\\tau} e_c,

the impulse response ``G`` being either the spec's closed-form ``solution``
(e.g. the Bateman function) or the matrix exponential (Gibaldi & Perrier
1982, ch. 1-2; Moler & Van Loan 2003 for ``expm``).  The same code builds
NumPy values (simulation) and PyTensor graphs (NUTS gradients), selected by
the ``backend``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec, Route

__all__ = ["state_amounts", "Doses"]

Doses = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Route name -> (dose times, dose amounts), in the spec's units."""


def _xp(backend):
    if backend is PYTENSOR:
        import pytensor.tensor as pt

        return pt
    return np


def _impulse_response(spec: ModelSpec, route: Route, env: Mapping[str, Any], tad, states: list[str], backend):
    """Amounts in ``states`` at times ``tad`` (any shape) after a unit dose via ``route``."""
    if route.solution:
        e = {**env, "tad": tad}
        return {s: route.solution[s](e, backend) for s in states}
    xp = _xp(backend)
    names = list(spec.states)
    A = spec.rate_matrix(env, backend)
    if backend is PYTENSOR:
        import pytensor.tensor as pt
        from pytensor.tensor.linalg import expm

        A = pt.stack([pt.stack([pt.as_tensor(a, dtype="float64") for a in row]) for row in A])
        G = expm(A * tad[..., None, None])
    else:
        from scipy.linalg import expm

        A = np.array(A, dtype=float)
        if A.ndim == 3:  # a batch of draws on the last axis -> (draw, n, n)
            A = np.moveaxis(A, -1, 0)
        G = expm(A * np.asarray(tad, float)[..., None, None])
    c = names.index(route.state)
    return {s: G[..., names.index(s), c] for s in states}


def state_amounts(
    spec: ModelSpec,
    env: Mapping[str, Any],
    times: np.ndarray,
    doses: Doses,
    states: list[str] | None = None,
    backend=NUMPY,
) -> dict[str, Any]:
    """Amounts of ``states`` at ``times`` given bolus ``doses`` (superposition).

    Parameters
    ----------
    spec : ModelSpec
        A spec with ``dynamics.linear = true``.
    env : mapping
        Parameter and derived values (floats, arrays or PyTensor variables).
    times : ndarray
        Times, in the spec's time unit.
    doses : mapping
        Route name -> (times, amounts), in the spec's units.
    states : list of str, optional
        Which states to return (default: all).
    backend : NUMPY or PYTENSOR
        With NumPy, ``env`` may hold 1-d arrays of S posterior draws: the
        result then has shape ``times.shape + (S,)``.

    Returns
    -------
    dict
        State name -> amounts with the shape of ``times``.  A dose given at
        the same time as an observation does not count in it (pre-dose sample).
    """
    if not spec.linear:
        raise ValueError(f"{spec.name}: state_amounts needs a linear spec")
    xp = _xp(backend)
    batched = backend is NUMPY and any(np.ndim(v) > 0 for v in env.values())
    states = list(spec.states) if states is None else states
    times = np.asarray(times, float)
    total = {s: 0.0 for s in states}
    for route_name, (t_dose, amount) in doses.items():
        if len(t_dose) == 0:
            continue
        route = spec.routes[route_name]
        tad = times[:, None] - np.asarray(t_dose, float)[None, :]
        scale = np.asarray(amount, float)[None, :]
        if batched:  # trailing axis for the draws
            tad, scale = tad[..., None], scale[..., None]
        if route.lag is not None:
            tad = tad - route.lag(env, backend)
            on = tad > 0
            tad = xp.where(on, tad, 0.0)
            scale = xp.where(on, scale, 0.0)
        else:  # the mask is data: fold it into constants
            on = tad > 0
            tad = np.where(on, tad, 0.0)
            scale = np.where(on, scale, 0.0)
        if route.bioavailability is not None:
            scale = scale * route.bioavailability(env, backend)
        response = _impulse_response(spec, route, env, tad, states, backend)
        for s in states:
            total[s] = total[s] + (response[s] * scale).sum(axis=1)
    return total
