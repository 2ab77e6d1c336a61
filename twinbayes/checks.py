"""Checks of a spec's mathematics, independent of any data."""

from __future__ import annotations

import dataclasses

import numpy as np

from .dynamics.linear import state_amounts
from .dynamics.reference import solve_reference
from .spec.model_spec import ModelSpec

__all__ = ["check_exact_solution"]

CHECK_TIMES = np.array([0.0, 0.05, 0.25, 0.5, 1.0, 2.0, 3.5, 6.0, 6.01, 9.0, 12.0, 18.0, 24.0, 30.5, 48.0])
CHECK_DOSES = (np.array([0.0, 6.0, 12.0, 30.0]), np.array([320.0, 100.0, 100.0, 250.0]))


def check_exact_solution(spec: ModelSpec, n_draws: int = 5, seed: int = 1) -> float:
    """Largest relative error of the exact solutions against a numerical ODE solve.

    For parameter values around the prior medians (each scaled by a factor in
    ``[e^-1, e]``), four doses by each route are simulated over 48 time units
    with both exact paths -- the spec's closed-form unit-dose solutions (if
    any) and the matrix exponential -- and compared with
    :func:`~twinbayes.dynamics.reference.solve_reference` (Radau, rtol 1e-11).
    The error is scaled by each state's largest amount.

    Returns
    -------
    float
        Maximum relative error over draws, routes, states and exact paths.
    """
    if not spec.linear:
        raise ValueError(f"{spec.name}: exact solutions exist only for linear specs")
    rng = np.random.default_rng(seed)
    typical = spec.typical_values()
    expm_spec = dataclasses.replace(spec, routes={k: dataclasses.replace(r, solution={}) for k, r in spec.routes.items()})
    variants = [spec, expm_spec] if any(r.solution for r in spec.routes.values()) else [expm_spec]
    worst = 0.0
    for _ in range(n_draws):
        env = spec.evaluate_derived({k: v * float(np.exp(rng.uniform(-1.0, 1.0))) for k, v in typical.items()})
        for route in spec.routes:
            doses = {route: CHECK_DOSES}
            ref = solve_reference(spec, env, CHECK_TIMES, doses)
            for variant in variants:
                got = state_amounts(variant, env, CHECK_TIMES, doses)
                for s in spec.states:
                    scale = np.abs(ref[s]).max()
                    if scale > 0:
                        worst = max(worst, float(np.abs(got[s] - ref[s]).max() / scale))
    return worst
