"""Reference solutions by numerical ODE integration (SciPy), for checks.

Independent of the closed forms and matrix exponentials in
:mod:`twinbayes.dynamics.linear`: the spec's right-hand sides are integrated
with :func:`scipy.integrate.solve_ivp` (Radau, tight tolerances) between
dose events, and each bolus is added to its state (times ``F``) at
``t_dose + lag``.  Used by ``twinbayes specs check`` and by the tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.integrate import solve_ivp

from ..spec.model_spec import ModelSpec
from .linear import Doses, unpack_doses

__all__ = ["solve_reference"]


def solve_reference(
    spec: ModelSpec,
    env: Mapping[str, float],
    times: np.ndarray,
    doses: Doses,
    rtol: float = 1e-11,
    atol: float = 1e-13,
    x0: Mapping[str, float] | None = None,
    forcing: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Integrate the spec's ODEs numerically; state amounts at ``times``.

    Boluses are added to their state at ``t_dose + lag``; infusions add a
    constant input ``F amount / duration`` to their state between
    ``t_dose + lag`` and ``t_dose + lag + duration``.  Like
    :func:`~twinbayes.dynamics.linear.state_amounts`, a bolus at the same
    time as an observation is not yet counted in it.  The state starts at
    ``x0`` (default zero) at time 0.  ``forcing`` maps the spec's inputs to
    (times, values), interpolated linearly; the solve restarts at every knot.
    """
    names = list(spec.states)
    events = []  # (time, state index, bolus amount, change of input rate)
    for route_name, entry in doses.items():
        t_dose, amount, duration = unpack_doses(entry)
        route = spec.routes[route_name]
        lag = float(route.lag(env)) if route.lag is not None else 0.0
        f = float(route.bioavailability(env)) if route.bioavailability is not None else 1.0
        idx = names.index(route.state)
        for td, a, d in zip(t_dose, amount, duration):
            if d > 0:
                events.append((td + lag, idx, 0.0, f * a / d))
                events.append((td + lag + d, idx, 0.0, -f * a / d))
            else:
                events.append((td + lag, idx, f * a, 0.0))
    forcing = dict(forcing or {})
    events += [
        (float(k), 0, 0.0, 0.0) for kt, _ in forcing.values() for k in kt if k > 0
    ]  # knots: restart only
    events.sort()
    inputs = np.zeros(len(names))

    def rhs(t, x):
        e = {
            **env,
            **dict(zip(names, x)),
            "t": t,
            **{n: np.interp(t, kt, kv) for n, (kt, kv) in forcing.items()},
        }
        return np.array([float(spec.rhs[s](e)) for s in names]) + inputs

    times = np.asarray(times, float)
    out = np.zeros((len(times), len(names)))
    x = np.array([float(x0[s]) for s in names]) if x0 else np.zeros(len(names))
    t0 = 0.0 if not events else min(0.0, events[0][0])
    pending = list(events)
    for i in np.argsort(times, kind="stable"):
        t = times[i]
        while pending and pending[0][0] < t:  # every event strictly before t
            te, idx, bolus, rate = pending.pop(0)
            x = _advance(rhs, x, t0, te, rtol, atol)
            x[idx] += bolus
            inputs[idx] += rate
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
