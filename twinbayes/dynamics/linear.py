"""Exact solutions of linear compartment systems with dose superposition.

For ``dx/dt = A x`` with bolus doses ``D_k`` given at times ``t_k`` into state
``c`` (after a lag ``t_lag``, with bioavailability ``F``), linearity gives

.. math::

    x(t) = \\sum_k F D_k \\, G(t - t_k - t_{lag}) \\, \\mathbb{1}[t > t_k + t_{lag}],
    \\qquad G(\\tau) = e^{A\\tau} e_c,

the impulse response ``G`` being either the spec's closed-form ``solution``
(e.g. the Bateman function) or the matrix exponential (Gibaldi & Perrier
1982, ch. 1-2; Moler & Van Loan 2003 for ``expm``).  A zero-order infusion
is the difference of two unit-rate step inputs, whose response is read off
the exponential of an augmented matrix (Van Loan 1978).  The same code builds
NumPy values (simulation) and PyTensor graphs (NUTS gradients), selected by
the ``backend``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec, Route

__all__ = ["state_amounts", "Doses", "unpack_doses"]

Doses = Mapping[str, tuple]
"""Route name -> (dose times, amounts[, infusion durations]), in the spec's units."""


def _xp(backend):
    if backend is PYTENSOR:
        import pytensor.tensor as pt

        return pt
    return np


def _response(
    spec: ModelSpec,
    route: Route,
    env: Mapping[str, Any],
    tad,
    states: list[str],
    backend,
    step: bool,
):
    """Amounts in ``states`` at times ``tad`` (any shape) after a unit dose via ``route``.

    ``step=False``: a unit bolus (impulse response ``e^{A tad} e_c``, or the
    spec's closed form).  ``step=True``: a unit-rate input switched on at 0,
    ``int_0^tad e^{A u} du e_c``, from the exponential of the augmented matrix
    ``[[A, e_c], [0, 0]]`` (Van Loan 1978, IEEE Trans Autom Control 23:395).
    """
    closed = route.infusion if step else route.solution
    if closed and all(s in closed for s in states):
        e = {**env, "tad": tad}
        return {s: closed[s](e, backend) for s in states}
    names = list(spec.states)
    n = len(names)
    c = names.index(route.state)
    A = spec.rate_matrix(env, backend)
    if step:  # augment: an extra state that feeds state c at unit rate
        A = [row + [1.0 if i == c else 0.0] for i, row in enumerate(A)] + [[0.0] * (n + 1)]
        c = n
    if backend is PYTENSOR:
        import pytensor.tensor as pt
        from pytensor.tensor.linalg import expm

        A = pt.stack([pt.stack([pt.as_tensor(a, dtype="float64") for a in row]) for row in A])
        G = expm(A * tad[..., None, None])
    else:
        from scipy.linalg import expm

        A = _stack_matrix(A)
        G = expm(A * np.asarray(tad, float)[..., None, None])
    return {s: G[..., names.index(s), c] for s in states}


def _stack_matrix(rows: list[list[Any]]) -> np.ndarray:
    """Nested entries (scalars or equal-length draw arrays) -> ``(n, n)`` or ``(draws, n, n)``."""
    sizes = {np.size(a) for row in rows for a in row if np.ndim(a) > 0}
    if not sizes:
        return np.array(rows, dtype=float)
    out = np.empty((sizes.pop(), len(rows), len(rows[0])))
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            out[:, i, j] = a
    return out


def _superpose(spec, route, env, times, t_dose, scale, states, backend, batched, step):
    """Sum over doses of ``scale_k * response(times - t_k - lag)``, zero before each dose."""
    if batched:
        return _superpose_by_dose(spec, route, env, times, t_dose, scale, states, step)
    return _superpose_dense(spec, route, env, times, t_dose, scale, states, backend, batched, step)


def _superpose_dense(spec, route, env, times, t_dose, scale, states, backend, batched, step):
    """:func:`_superpose` over a ``times x doses`` (x draws) array: one graph for PyTensor."""
    xp = _xp(backend)
    tad = times[:, None] - np.asarray(t_dose, float)[None, :]
    scale = np.asarray(scale, float)[None, :]
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
    response = _response(spec, route, env, tad, states, backend, step)
    return {s: (response[s] * scale).sum(axis=1) for s in states}


def _superpose_by_dose(spec, route, env, times, t_dose, scale, states, step):
    """:func:`_superpose` for NumPy draws, one dose at a time over the times after it.

    The same sum, term for term and in the same order (so the same bits), without the
    ``times x doses x draws`` array: each dose is evaluated only where it can act (times after
    the dose plus the shortest lag), which halves the work of a regimen and keeps the
    temporaries ``times x draws``.
    """
    lag = route.lag(env, NUMPY) if route.lag is not None else None
    fbio = route.bioavailability(env, NUMPY) if route.bioavailability is not None else None
    earliest = float(np.min(lag)) if lag is not None else 0.0
    width = max(np.shape(v)[0] for v in env.values() if np.ndim(v) > 0)
    out = {s: np.zeros((len(times), width)) for s in states}
    for t_k, a_k in zip(np.asarray(t_dose, float), np.asarray(scale, float)):
        after = np.nonzero(times - t_k - earliest > 0)[0]
        if after.size == 0:
            continue
        if after[-1] - after[0] + 1 == after.size:  # sorted times: a view, added to in place
            after = slice(int(after[0]), int(after[-1]) + 1)
        tad = (times[after] - t_k)[:, None]
        a = np.full(tad.shape, a_k)
        if lag is not None:
            tad = tad - lag
        on = tad > 0
        tad, a = np.where(on, tad, 0.0), np.where(on, a, 0.0)
        if fbio is not None:
            a = a * fbio
        response = _response(spec, route, env, tad, states, NUMPY, step)
        for s in states:
            out[s][after] += response[s] * a
    return out


def unpack_doses(entry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, amounts, durations)`` of one route's doses (durations 0 when not given)."""
    t = np.asarray(entry[0], float)
    amount = np.asarray(entry[1], float)
    duration = np.asarray(entry[2], float) if len(entry) > 2 else np.zeros_like(t)
    return t, amount, duration


def state_amounts(
    spec: ModelSpec,
    env: Mapping[str, Any],
    times: np.ndarray,
    doses: Doses,
    states: list[str] | None = None,
    backend=NUMPY,
) -> dict[str, Any]:
    """Amounts of ``states`` at ``times`` given ``doses`` (superposition).

    Parameters
    ----------
    spec : ModelSpec
        A spec with ``dynamics.linear = true``.
    env : mapping
        Parameter and derived values (floats, arrays or PyTensor variables).
    times : ndarray
        Times, in the spec's time unit.
    doses : mapping
        Route name -> (times, amounts) or (times, amounts, durations), in the
        spec's units.  A duration > 0 is a zero-order infusion of the amount
        over that time (rate = amount / duration); 0 is a bolus.
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
    batched = backend is NUMPY and any(np.ndim(v) > 0 for v in env.values())
    states = list(spec.states) if states is None else states
    times = np.asarray(times, float)
    total = {s: 0.0 for s in states}

    def add(parts, sign=1.0):
        for s in states:
            total[s] = total[s] + sign * parts[s]

    for route_name, entry in doses.items():
        t_dose, amount, duration = unpack_doses(entry)
        if len(t_dose) == 0:
            continue
        if np.any(duration < 0):
            raise ValueError(f"negative infusion duration for route {route_name!r}")
        route = spec.routes[route_name]
        bolus = duration == 0
        if bolus.any():
            add(
                _superpose(
                    spec,
                    route,
                    env,
                    times,
                    t_dose[bolus],
                    amount[bolus],
                    states,
                    backend,
                    batched,
                    step=False,
                )
            )
        if (~bolus).any():
            rate = amount[~bolus] / duration[~bolus]
            add(
                _superpose(
                    spec,
                    route,
                    env,
                    times,
                    t_dose[~bolus],
                    rate,
                    states,
                    backend,
                    batched,
                    step=True,
                )
            )
            add(
                _superpose(
                    spec,
                    route,
                    env,
                    times,
                    t_dose[~bolus] + duration[~bolus],
                    rate,
                    states,
                    backend,
                    batched,
                    step=True,
                ),
                -1.0,
            )
    return total
