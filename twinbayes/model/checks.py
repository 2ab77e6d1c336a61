"""Checks of a spec's mathematics, independent of any data."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..dynamics.linear import state_amounts
from ..dynamics.reference import solve_reference
from ..spec.model_spec import ModelSpec

__all__ = ["check_exact_solution", "check_ode_accuracy", "check_spec"]

CHECK_TIMES = np.array(
    [0.0, 0.05, 0.25, 0.5, 1.0, 2.0, 3.5, 6.0, 6.01, 9.0, 12.0, 18.0, 24.0, 30.5, 48.0]
)
CHECK_DOSES = (np.array([0.0, 6.0, 12.0, 30.0]), np.array([320.0, 100.0, 100.0, 250.0]))
CHECK_INFUSIONS = (*CHECK_DOSES, np.array([1.0, 0.5, 2.0, 0.0]))
"""The doses of :data:`CHECK_DOSES` as three zero-order infusions and a bolus (durations in the
spec's time unit)."""


def check_exact_solution(spec: ModelSpec, n_draws: int = 5, seed: int = 1) -> float:
    """Largest relative error of the exact solutions against a numerical ODE solve.

    For parameter values around the prior medians (each scaled by a factor in
    ``[e^-1, e]``), four doses by each route, as boluses and as zero-order
    infusions (:data:`CHECK_INFUSIONS`), are simulated over 48 time units
    with both exact paths -- the spec's closed-form unit-dose solutions (if
    any) and the matrix exponential -- and compared with
    :func:`~twinbayes.dynamics.reference.solve_reference` (Radau, rtol 1e-11).
    The error is scaled by each state's largest amount.

    Specs with a closed-form trajectory in ``t`` (no doses) are checked
    against the ODE solved from the trajectory's own value at t = 0.

    Returns
    -------
    float
        Maximum relative error over draws, routes, states and exact paths.
    """
    rng = np.random.default_rng(seed)
    typical = spec.typical_values()
    if spec.solution:
        return _check_trajectory(spec, typical, n_draws, rng)
    if not spec.linear:
        raise ValueError(
            f"{spec.name}: nonlinear and without a closed-form trajectory: nothing exact to check"
        )
    expm_spec = dataclasses.replace(
        spec,
        routes={
            k: dataclasses.replace(r, solution={}, infusion={}) for k, r in spec.routes.items()
        },
    )
    closed = any(r.solution or r.infusion for r in spec.routes.values())
    variants = [spec, expm_spec] if closed else [expm_spec]
    worst = 0.0
    for _ in range(n_draws):
        env = spec.evaluate_derived(
            {k: v * float(np.exp(rng.uniform(-1.0, 1.0))) for k, v in typical.items()}
        )
        for doses in [{r: d} for r in spec.routes for d in (CHECK_DOSES, CHECK_INFUSIONS)]:
            ref = solve_reference(spec, env, CHECK_TIMES, doses)
            for variant in variants:
                got = state_amounts(variant, env, CHECK_TIMES, doses)
                for s in spec.states:
                    scale = np.abs(ref[s]).max()
                    if scale > 0:
                        worst = max(worst, float(np.abs(got[s] - ref[s]).max() / scale))
    return worst


def _check_trajectory(spec: ModelSpec, typical: dict, n_draws: int, rng) -> float:
    """A closed-form trajectory in ``t`` vs the ODE solved from its own value at t = 0."""
    times = np.linspace(0.0, 30.0, 61)
    worst = 0.0
    for _ in range(n_draws):
        env = spec.evaluate_derived(
            {k: v * float(np.exp(rng.uniform(-0.5, 0.5))) for k, v in typical.items()}
        )
        x0 = {s: float(spec.solution[s]({**env, "t": 0.0})) for s in spec.states}
        ref = solve_reference(spec, env, times, {}, x0=x0)
        for s in spec.states:
            got = np.asarray(spec.solution[s]({**env, "t": times}), float)
            scale = np.abs(ref[s]).max()
            worst = max(worst, float(np.abs(got - ref[s]).max() / scale))
    return worst


def check_ode_accuracy(
    spec: ModelSpec, design=None, n_draws: int = 5, seed: int = 1, span: float = 30.0
) -> float:
    """Largest relative error of the ODE engine against ``solve_ivp`` (Radau, rtol 1e-11).

    For nonlinear specs without a closed form; parameters around the prior
    medians (each scaled by a factor in ``[e^-0.5, e^0.5]``); a spec with dose
    routes gets by each route the doses of :data:`CHECK_INFUSIONS` (three
    infusions, one bolus; by a route with a lag time they start and end after it).  The
    times are those of ``design`` (a :class:`~twinbayes.dynamics.design.Design`), else
    20 over ``span`` time units; specs driven by forcing inputs need a design,
    which supplies the input series and baselines.  The error is scaled by
    each state's largest absolute value.
    """
    from ..dynamics.ode import ode_trajectories

    if spec.inputs and design is None:
        raise ValueError(
            f"spec {spec.name!r} is driven by input(s) {list(spec.inputs)}: check it with data that supply them, "
            "e.g. `twinbayes specs check SPEC --patient data.csv`"
        )
    rng = np.random.default_rng(seed)
    typical = spec.typical_values()
    if design is None:
        times, inputs, baselines = np.linspace(span / 20, span, 20), {}, {}
        doses = dict.fromkeys(spec.routes, CHECK_INFUSIONS)
        if doses:  # by each route three infusions and a bolus, outputs around and at the doses
            times = CHECK_TIMES
    else:
        times, inputs, baselines, doses = (
            np.unique(np.concatenate(list(design.times.values()))),
            design.inputs,
            design.baselines,
            design.doses,
        )
    worst = 0.0
    for _ in range(n_draws):
        env = (
            spec.evaluate_derived(
                {k: v * float(np.exp(rng.uniform(-0.5, 0.5))) for k, v in typical.items()}
            )
            | baselines
        )
        x0 = {s: float(spec.initial[s](env)) for s in spec.states}
        ref = solve_reference(spec, env, times, doses, x0=x0, forcing=inputs)
        got = ode_trajectories(spec, env, times, list(spec.states), inputs=inputs, doses=doses)
        for s in spec.states:
            scale = np.abs(ref[s]).max()
            if scale > 0:
                worst = max(worst, float(np.abs(got[s] - ref[s]).max() / scale))
    return worst


def check_spec(spec: ModelSpec, design=None) -> tuple[str, float, float]:
    """(what was checked, max relative error, tolerance) for any spec; ``design`` for forced specs."""
    if spec.solution or spec.linear:
        return "exact solution vs ODE solve", check_exact_solution(spec), 1e-6
    return "ODE engine vs solve_ivp", check_ode_accuracy(spec, design), 1e-4
