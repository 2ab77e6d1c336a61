"""Reference solutions by numerical ODE integration (SciPy), for checks.

Independent of the closed forms and matrix exponentials in
:mod:`twinbayes.dynamics.linear`: the spec's right-hand sides are integrated
with :func:`scipy.integrate.solve_ivp` (Radau, tight tolerances) between
dose events, and each bolus is added to its state (times ``F``) at
``t_dose + lag``.  Used by ``twinbayes specs check`` and by the tests.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.integrate import solve_ivp

from ..spec.model_spec import ModelSpec
from .linear import Doses

__all__ = ["solve_reference"]


def solve_reference(
    spec: ModelSpec,
    env: Mapping[str, float],
    times: np.ndarray,
    doses: Doses,
    rtol: float = 1e-11,
    atol: float = 1e-13,
) -> dict[str, np.ndarray]:
    """Integrate the spec's ODEs numerically; state amounts at ``times``.

    Like :func:`~twinbayes.dynamics.linear.state_amounts`, a dose at the
    same time as an observation is not yet counted in it.
    """
    names = list(spec.states)
    events = []  # (time, state index, amount)
    for route_name, (t_dose, amount) in doses.items():
        route = spec.routes[route_name]
        lag = float(route.lag(env)) if route.lag is not None else 0.0
        f = float(route.bioavailability(env)) if route.bioavailability is not None else 1.0
        for td, a in zip(t_dose, amount):
            events.append((float(td) + lag, names.index(route.state), f * float(a)))
    events.sort()

    def rhs(t, x):
        e = {**env, **dict(zip(names, x)), "t": t}
        return [float(spec.rhs[s](e)) for s in names]

    times = np.asarray(times, float)
    out = np.zeros((len(times), len(names)))
    x = np.zeros(len(names))
    t0 = 0.0 if not events else min(0.0, events[0][0])
    pending = list(events)
    order = np.argsort(times, kind="stable")
    for i in order:
        t = times[i]
        # integrate through every event strictly before t
        while pending and pending[0][0] < t:
            te, idx, amt = pending.pop(0)
            x = _advance(rhs, x, t0, te, rtol, atol)
            x[idx] += amt
            t0 = te
        x = _advance(rhs, x, t0, t, rtol, atol)
        t0 = t
        out[i] = x
    return {s: out[:, j] for j, s in enumerate(names)}


def _advance(rhs, x, t0, t1, rtol, atol):
    if t1 <= t0:
        return np.array(x, float)
    sol = solve_ivp(rhs, (t0, t1), x, method="Radau", rtol=rtol, atol=atol)
    if not sol.success:  # pragma: no cover - solver failure is reported, not hidden
        raise RuntimeError(f"reference ODE solve failed: {sol.message}")
    return sol.y[:, -1]
