"""Numerical ODE solutions with forward sensitivities, for nonlinear specs.

Specs whose dynamics have no closed form are integrated with the explicit
Dormand-Prince 5(4) pair with adaptive step size (Dormand & Prince 1980,
J. Comput. Appl. Math. 6:19-26; step control as in Hairer, Nørsett & Wanner
1993, Solving Ordinary Differential Equations I, sec. II.4).  For NUTS the
same integration carries the forward sensitivities ``S = dy/d(p, y0)``,
``dS/dt = (df/dy) S + df/dp`` (Hairer et al. sec. I.14), whose Jacobians are
derived symbolically from the spec (:mod:`twinbayes.spec.symbolic`).  The error
control covers states *and* sensitivities, so gradients are as accurate as
values.  The right-hand sides, Jacobians and the integrator are compiled with
Numba; a PyTensor ``Op`` (:class:`OdeSolveOp`) exposes them to PyMC with a
gradient and a Numba implementation, so nutpie's compiled log density calls
the solver without leaving machine code.

Forcing inputs (an insulin series, an inflow waveform) are interpolated
linearly; the integrator stops at every knot, so each step sees a smooth
right-hand side.  Doses enter the state of their route: a bolus as a jump of
``F amount`` at ``t_dose + lag``, a zero-order infusion as the rate ``F amount /
duration`` added to that state's right-hand side between its start and end (an
input slot of the compiled system, 0 elsewhere), the integrator stopping at
each.  Lag time ``lag`` and bioavailability ``F`` are expressions of the
parameters; the jump times therefore move with them, and the sensitivities
jump too: for a bolus at ``tau = t_dose + lag(p)``,
``S+ = S- + (f(tau, y-) - f(tau, y+)) dtau/dp + amount e_i dF/dp``, and where a lagged
infusion starts or ends, ``S+ = S- + (f(tau, u-) - f(tau, u+)) dtau/dp``
(the classic pitfall of event sensitivities; e.g. Rozenvasser 1967, and
Hindmarsh & Serban, CVODES guide, sec. 5).

Failure is never silent: a system that needs more than ``dynamics.max_steps``
steps (stiff at these parameters, or blowing up) or produces non-finite
values returns NaN, which makes the log density non-finite and is reported
by the sampler as a divergence; outside sampling, :func:`solve` raises
:class:`OdeError` naming the spec and where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec
from ..spec.nodes import ONE, ZERO, add, mul
from ..spec.symbolic import Node, derivative, helpers, parse, to_statements
from .implicit import implicit_loop
from .linear import unpack_doses
from .packed import start_fn
from .tableau import DOPRI5, ButcherTableau

__all__ = [
    "OdeError",
    "OdeSystem",
    "ode_system",
    "Forcing",
    "ode_trajectories",
    "solve",
    "Integrator",
    "integrator",
    "spec_integrator",
]

RTOL = 1e-6
ATOL = 1e-8
MAX_STEPS = 20_000
CACHE_SIZE = 32
"""Compiled systems and integrators kept per process (least recently used are dropped)."""

OK, TOO_MANY_STEPS, NOT_FINITE = 0, 1, 2

INFUSION = "__infusion_"
"""Prefix of the input slot that carries the infusion rate into a dosed state (no spec name
can start with an underscore)."""


class OdeError(RuntimeError):
    """An ODE solve failed (stiffness, blow-up, or too many steps), or cannot be set up for these doses."""


# ---------------------------------------------------------------- code generation


class SystemDefinition(NamedTuple):
    """What a compiled system depends on, and nothing else: its cache key (hashable by content).

    Two specs with the same states, parameters, inputs and expression trees
    share one compiled system; editing any expression (in a file or in
    memory with ``dataclasses.replace``) gives another.
    """

    states: tuple[str, ...]
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    trees: tuple[Node, ...]
    routes: tuple[tuple[int, Node, Node], ...] = ()
    """Per dose route: the index of its state, its lag time and its bioavailability."""


@dataclass(frozen=True)
class OdeSystem:
    """A spec's right-hand sides compiled for the integrator.

    Attributes
    ----------
    states : tuple of str
        State order in ``y``.
    params : tuple of str
        Symbols in ``p``: parameters, fixed quantities, covariates, derived quantities and
        input baselines the right-hand sides read (in this order of the spec).
    inputs : tuple of str
        Forcing inputs in ``u``.
    source : str
        The generated Python source (for inspection).
    route_states : tuple of int
        The state each dose route feeds (routes in the spec's order).
    rhs, rhs_jac : callable
        Numba functions ``rhs(t, y, p, u, out)`` and ``rhs_jac(t, y, p, u, out, jy, jp)``.
    route_terms : callable
        Numba function ``route_terms(p, lag, dlag, F, dF)``: each route's lag time and
        bioavailability and their gradients with respect to ``p``.
    """

    states: tuple[str, ...]
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    source: str
    route_states: tuple[int, ...] = ()
    rhs: Any = field(default=None, compare=False, repr=False)
    rhs_jac: Any = field(default=None, compare=False, repr=False)
    route_terms: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def dose_routes(spec: ModelSpec) -> tuple[str, ...]:
    """The dose routes of a spec integrated numerically (none for linear or closed-form specs)."""
    return () if spec.linear or spec.solution else tuple(spec.routes)


def system_definition(spec: ModelSpec) -> SystemDefinition:
    """The content of ``spec`` that its compiled system depends on.

    Each dosed state's right-hand side gets ``+ F_r u_r`` for each route ``r`` into it:
    ``u_r`` the rate of the infusions by that route, ``F_r`` its bioavailability.
    """
    states = tuple(spec.states)
    routes = [spec.routes[r] for r in dose_routes(spec)]
    lag = {r.name: parse(r.lag) if r.lag is not None else ZERO for r in routes}
    bio = {
        r.name: parse(r.bioavailability) if r.bioavailability is not None else ONE for r in routes
    }
    trees = []
    for s in states:
        tree = parse(spec.rhs[s])
        for r in routes:
            if r.state == s:
                tree = add(tree, mul(bio[r.name], ("sym", INFUSION + r.name)))
        trees.append(tree)
    used = set().union(*(spec.rhs[s].symbols for s in states))
    for r in routes:
        used |= (r.lag.symbols if r.lag is not None else set()) | (
            r.bioavailability.symbols if r.bioavailability is not None else set()
        )
    quantities = [
        *spec.parameters,
        *spec.fixed,
        *spec.covariates,
        *spec.derived,
        *(i.baseline for i in spec.inputs.values() if i.baseline),
    ]
    params = tuple(q for q in quantities if q in used)
    return SystemDefinition(
        states,
        params,
        tuple(spec.inputs) + tuple(INFUSION + r.name for r in routes),
        tuple(trees),
        tuple((states.index(r.state), lag[r.name], bio[r.name]) for r in routes),
    )


def ode_system(spec: ModelSpec) -> OdeSystem:
    """The compiled right-hand side and Jacobians of ``spec`` (cached by the content of its expression trees)."""
    return _compile_system(system_definition(spec))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile_system(definition: SystemDefinition) -> OdeSystem:
    """Generate the source of ``f``, ``df/dy`` and ``df/dp`` and compile it with Numba."""
    import numba

    states, params, inputs, trees, routes = definition
    slots = {"t": "t"}
    slots.update({s: f"y[{i}]" for i, s in enumerate(states)})
    slots.update({q: f"p[{i}]" for i, q in enumerate(params)})
    slots.update({u: f"u[{i}]" for i, u in enumerate(inputs)})
    f = [(f"out[{i}]", tree) for i, tree in enumerate(trees)]
    jy = [
        (f"jy[{i}, {j}]", derivative(tree, s))
        for i, tree in enumerate(trees)
        for j, s in enumerate(states)
    ]
    jp = [
        (f"jp[{i}, {j}]", derivative(tree, q))
        for i, tree in enumerate(trees)
        for j, q in enumerate(params)
    ]
    lines = ["def rhs(t, y, p, u, out):", *to_statements(f, slots), "    return", ""]
    lines += [
        "def rhs_jac(t, y, p, u, out, jy, jp):",
        *to_statements(f + jy + jp, slots),
        "    return",
        "",
    ]
    terms = [
        (f"{name}[{r}]", tree)
        for r, (_, lag, bio) in enumerate(routes)
        for name, tree in (("lag", lag), ("F", bio))
    ] + [
        (f"{name}[{r}, {j}]", derivative(tree, q))
        for r, (_, lag, bio) in enumerate(routes)
        for name, tree in (("dlag", lag), ("dF", bio))
        for j, q in enumerate(params)
    ]
    lines += ["def route_terms(p, lag, dlag, F, dF):", *to_statements(terms, slots), "    return"]
    source = "\n".join(lines) + "\n"
    namespace = {k: (v if k == "math" else numba.njit(v)) for k, v in helpers().items()}
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    exec(
        compile(source, f"<twinbayes ode {key}>", "exec"), namespace
    )  # generated, see spec.symbolic
    jit = numba.njit(inline="always")  # inlined into the integrator: no call overhead per stage
    return OdeSystem(
        states,
        params,
        inputs,
        source,
        tuple(r[0] for r in routes),
        jit(namespace["rhs"]),
        jit(namespace["rhs_jac"]),
        jit(namespace["route_terms"]),
    )


# ---------------------------------------------------------------- forcing and time grid


@dataclass(frozen=True)
class Forcing:
    """Output times, input knots and doses: everything a solve needs besides the parameters.

    Attributes
    ----------
    times : ndarray
        Output times (any order, repeats allowed).
    stops : ndarray
        0, every input knot and infusion start and end inside the output range, and
        the last output time: sorted, unique.  Between stops the inputs are linear.
    u0, du : ndarray
        Input values at the start of interval ``k`` (``stops[k]..stops[k+1]``)
        and their slopes there, shape ``(len(stops) - 1, n_inputs)``; an infusion
        rate is constant over each interval (its start and end are stops).
    dose_t, dose_r, dose_a : ndarray
        Dose events (:func:`boluses`): nominal time, code and amount.  A bolus (code ``r``,
        the route's index in the system's route order) is added, times the route's
        bioavailability, to the route's state at ``dose_t + lag`` (before the interval
        starting there is integrated; an output at that time is the amount just before the
        dose).  Code ``R + r`` changes route ``r``'s infusion rate by ``dose_a`` at
        ``dose_t + lag`` (a lagged infusion's start or end).
    """

    times: np.ndarray
    stops: np.ndarray
    u0: np.ndarray
    du: np.ndarray
    dose_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dose_r: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dose_a: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def build(
        cls,
        times: np.ndarray,
        inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
        names: tuple[str, ...],
        boluses: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        infusions: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    ) -> Forcing:
        """``boluses``: (times, route indices, amounts); ``infusions``: input name ->
        (starts, ends, rates) for the infusion slots in ``names``."""
        times = np.asarray(times, float)
        tmax = float(times.max()) if times.size else 0.0
        infusions = dict(infusions or {})
        knots = [np.asarray(inputs[n][0], float) for n in names if n not in infusions]
        knots += [np.concatenate([a, b]) for a, b, _ in infusions.values()]
        stops = np.unique(np.concatenate([[0.0, tmax], *[k[(k > 0) & (k < tmax)] for k in knots]]))
        u0 = np.zeros((max(len(stops) - 1, 0), len(names)))
        du = np.zeros_like(u0)
        mid = 0.5 * (stops[:-1] + stops[1:])
        for j, n in enumerate(names):
            if n in infusions:  # constant over each interval: the sum of the infusions running
                starts, ends, rates = infusions[n]
                u0[:, j] = ((mid[:, None] >= starts) & (mid[:, None] < ends)) @ rates
                continue
            kt, kv = (np.asarray(a, float) for a in inputs[n])
            lo, hi = np.interp(stops[:-1], kt, kv), np.interp(stops[1:], kt, kv)
            u0[:, j], du[:, j] = lo, (hi - lo) / np.diff(stops)
        dose_t, dose_r, dose_a = boluses if boluses is not None else (np.zeros(0),) * 3
        return cls(
            times,
            stops,
            u0,
            du,
            np.asarray(dose_t, float),
            np.asarray(dose_r, np.int64),
            np.asarray(dose_a, float),
        )

    @classmethod
    def for_doses(
        cls,
        spec: ModelSpec,
        times: np.ndarray,
        doses: Mapping[str, tuple] | None = None,
        inputs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Forcing:
        """The forcing of ``spec`` for ``doses`` (route -> (times, amounts[, durations])) and ``inputs``."""
        return cls.build(
            times,
            inputs or {},
            ode_system(spec).inputs,
            boluses(spec, doses),
            infusions(spec, doses),
        )

    def arrays_for(self) -> tuple[np.ndarray, ...]:
        """``(times, stops, dose_t, dose_r, dose_a, u0, du)``, the integrator's arguments after ``p, y0``.

        Read-only views: Numba types arrays a compiled function closes over (the PyTensor Op's)
        as read-only, so a call from Python with these reuses that machine code instead of
        compiling the integrator a second time.
        """
        arrays = (self.times, self.stops, self.dose_t, self.dose_r, self.dose_a, self.u0, self.du)
        return tuple(_read_only(a) for a in arrays)

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for a in self.arrays_for():
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``."""
    view = a.view()
    view.flags.writeable = False
    return view


# ---------------------------------------------------------------- the integrator
# Built as diffrax builds its solvers: the tableau is data (tableau.py); a derivative with
# sensitivities, a generic explicit Runge-Kutta step, a step-size controller and a dense
# output are separate Numba functions, inlined into one integration loop.


class Integrator(NamedTuple):
    """Compiled solvers of one system.

    ``one(p, y0, times, stops, dose_t, dose_r, dose_a, u0, du, rtol, atol, max_step, max_steps, sens)
    -> (Y, S, status, t, y)``
    solves for one parameter vector (``Y[i]`` the states at ``times[i]``,
    ``S[i]`` their sensitivities to ``(y0, p)``, zeros unless ``sens``; ``t`` and ``y``
    where the integration stopped, for the diagnosis of a failure);
    ``many(P, Y0, times, stops, dose_t, dose_r, dose_a, u0, du, rtol, atol, max_step, max_steps) -> Y``
    solves row by row for draws (no sensitivities; NaN rows where a solve failed).
    """

    one: Callable
    many: Callable


def _make_derivative(system: OdeSystem):
    """``deriv(t, z, p, u, sens, out, jy, jp)``: ``dz/dt`` for ``z = (y, vec S)``, ``dS/dt = (df/dy) S + [0, df/dp]``."""
    import numba

    rhs, rhs_jac = system.rhs, system.rhs_jac
    n, m = len(system.states), len(system.states) + len(system.params)

    @numba.njit(inline="always")
    def deriv(t, z, p, u, sens, out, jy, jp):
        y = z[:n]
        if not sens:
            rhs(t, y, p, u, out)
            return
        rhs_jac(t, y, p, u, out, jy, jp)
        for i in range(n):
            for j in range(m):
                acc = 0.0
                for l in range(n):
                    acc += jy[i, l] * z[n + l * m + j]
                if j >= n:
                    acc += jp[i, j - n]
                out[n + i * m + j] = acc

    return deriv


def _make_step(deriv, tableau: ButcherTableau):
    """``step(...)``: one explicit Runge-Kutta step of size ``hs``, written out from the tableau.

    On entry ``K[0] = f(t, z)``; on exit ``K[j]`` holds stage ``j``, ``ynew`` the
    propagated solution at ``t + hs`` (the last stage's argument: FSAL, so
    ``K[-1]`` is its derivative) and ``errv`` the local error estimate.
    Inputs are linear within segment ``seg`` (from ``u0``, ``du``).  The
    tableau's nonzero coefficients are written into the source as literals
    (:func:`step_source`), so Numba compiles straight-line code per stage.
    """
    import numba

    namespace = {"deriv": deriv}
    exec(compile(step_source(tableau), "<twinbayes rk step>", "exec"), namespace)  # numbers only
    return numba.njit(inline="always")(namespace["step"])


def _weighted_sum(weights: np.ndarray, upto: int) -> str:
    """Source of ``sum_j w_j K[j, i]`` over the nonzero weights of the first ``upto`` stages."""
    terms = [f"{float(w)!r} * k{j}[i]" for j, w in enumerate(weights[:upto]) if w != 0.0]
    return " + ".join(terms) or "0.0"


def step_source(tableau: ButcherTableau) -> str:
    """Python source of the Runge-Kutta step for ``tableau`` (see :func:`_make_step`)."""
    ks = ", ".join(f"k{j}" for j in range(len(tableau.c)))
    lines = [f"def step(t, hs, t0, seg, z, {ks}, ynew, errv, p, u, u0, du, sens, jy, jp, size):"]
    for st in range(1, len(tableau.c)):
        lines += [
            "    for i in range(size):",
            f"        ynew[i] = z[i] + hs * ({_weighted_sum(tableau.a[st], st)})",
            f"    ts = t + {float(tableau.c[st])!r} * hs",
            "    for j in range(u.shape[0]):",
            "        u[j] = u0[seg, j] + (ts - t0) * du[seg, j]",
            f"    deriv(ts, ynew, p, u, sens, k{st}, jy, jp)",
        ]
    lines += [
        "    for i in range(size):",
        f"        errv[i] = hs * ({_weighted_sum(tableau.e, len(tableau.e))})",
    ]
    return "\n".join(lines) + "\n"


def _make_controller(order: int):
    """``factor(err)``: the step-size factor after a step with scaled error ``err`` (accepted when ``err <= 1``).

    ``0.9 err^(-1/order)`` clipped to [0.2, 5]; 0.2 after a non-finite error
    (Hairer et al. 1993, sec. II.4, eq. 4.13).
    """
    import numba

    expo = -1.0 / order

    @numba.njit(inline="always")
    def factor(err):
        if not np.isfinite(err):
            return 0.2
        if err == 0.0:
            return 5.0
        return min(5.0, max(0.2, 0.9 * err**expo))

    return factor


def _make_dense(tableau: ButcherTableau):
    """``dense(theta, hs, z, ynew, k0, ..., row, size)``: the continuous extension at ``t + theta hs`` into ``row``.

    The 4th-order interpolant of DOPRI5 (Hairer et al. 1993, sec. II.6; ``CONTD5`` in dopri5.f).
    """
    import numba

    ks = ", ".join(f"k{j}" for j in range(len(tableau.d)))
    last = f"k{len(tableau.d) - 1}"
    src = f"""def dense(theta, hs, z, ynew, {ks}, row, size):
    th1 = 1.0 - theta
    for i in range(size):
        ydiff = ynew[i] - z[i]
        bspl = hs * k0[i] - ydiff
        acc = {_weighted_sum(tableau.d, len(tableau.d))}
        row[i] = z[i] + theta * (ydiff + th1 * (bspl + theta * ((ydiff - hs * {last}[i] - bspl) + th1 * hs * acc)))
"""
    namespace: dict = {}
    exec(compile(src, "<twinbayes dense output>", "exec"), namespace)  # numbers only
    dense = numba.njit(inline="always")(namespace["dense"])

    return dense


@functools.lru_cache(maxsize=1)
def _norm():
    import numba

    @numba.njit(inline="always")
    def norm(v, z_a, z_b, rtol, atol, size):
        """RMS of ``v`` scaled by ``atol + rtol max(|z_a|, |z_b|)``."""
        acc = 0.0
        for i in range(size):
            sc = atol + rtol * max(abs(z_a[i]), abs(z_b[i]))
            acc += (v[i] / sc) ** 2
        return np.sqrt(acc / size)

    return norm


def _make_initial_step(deriv):
    """``initial_step(...)``: the first step size from the states (Hairer et al. 1993, sec. II.4, p. 169)."""
    import numba

    norm = _norm()

    @numba.njit(inline="always")
    def initial_step(t0, t1, z, k1, p, u, jy, jp, tmp, k2, d, rtol, atol, max_step, n):
        n0 = norm(z, z, z, rtol, atol, n)
        n1 = norm(k1, z, z, rtol, atol, n)
        h0 = 0.01 * n0 / n1 if n0 > 1e-5 and n1 > 1e-5 else 1e-6
        h0 = min(h0, t1 - t0)
        for i in range(n):
            tmp[i] = z[i] + h0 * k1[i]
        deriv(t0 + h0, tmp, p, u, False, k2, jy, jp)
        for i in range(n):
            d[i] = (k2[i] - k1[i]) / h0
        n2 = norm(d, z, z, rtol, atol, n)
        h1 = (0.01 / max(n1, n2)) ** 0.2 if max(n1, n2) > 1e-15 else max(1e-6, h0 * 1e-3)
        return min(100.0 * h0, h1, t1 - t0, max_step)

    return initial_step


METHODS = ("explicit", "implicit")
"""``dynamics.method``: Dormand-Prince 5(4) (default) or ESDIRK3(2)4L[2]SA for stiff systems
(:mod:`twinbayes.dynamics.implicit`)."""


def _make_dosing(system: OdeSystem):
    """``(schedule, apply_doses, enter)``: Numba functions shared by both integrators.

    ``schedule(p, stops, dose_t, dose_r) -> (bt, order, bounds, lag, dlag, F, dF)``: the
    dose times ``bt = dose_t + lag(p)`` in time order (``order``), the integration
    boundaries ``bounds`` (the stops and the dose times inside the output range) and the
    routes' lag and bioavailability with their gradients.

    ``apply_doses(t0, d, bt, order, dose_r, dose_a, z, p, u, u0, seg, sens, dlag, F, dF, fa, fb) -> (d, jumped)``:
    the dose events due at ``t0``, one by one (the d-th and later of ``order``).  A bolus
    (``dose_r < R``): the state jumps by ``F amount``, and with sensitivities
    ``S += (f(t0, y-) - f(t0, y+)) dlag/dp + amount e_i dF/dp``.  A rate change of a lagged
    infusion (``R <= dose_r < 2 R``, route ``dose_r - R``): the route's infusion input rises by
    ``dose_a`` (falls, at the end) from ``t0`` on (``u`` and the rows ``seg..`` of ``u0``), and
    ``S += (f(t0, y, u-) - f(t0, y, u+)) dlag/dp``; ``F`` multiplies that input in the
    right-hand side, so its sensitivity is continuous (``df/dp``).

    ``enter(stops, u0, du, t, u) -> (seg, stops[seg])``: the interval of ``stops`` holding ``t``
    (its inputs are linear), with the inputs at ``t`` written to ``u``.
    """
    import numba

    rhs, route_terms = system.rhs, system.route_terms
    n, k = len(system.states), len(system.params)
    m, R = n + k, len(system.route_states)
    route_state = np.array(system.route_states, np.int64)
    first_slot = len(system.inputs) - R  # the infusion input of route r is u[first_slot + r]
    R1 = max(R, 1)  # dose_r % R1 is the route of any event (there are none without routes)

    @numba.njit(inline="always")
    def schedule(p, stops, dose_t, dose_r):
        lag, F = np.zeros(max(R, 1)), np.ones(max(R, 1))
        dlag, dF = np.zeros((max(R, 1), max(k, 1))), np.zeros((max(R, 1), max(k, 1)))
        route_terms(p, lag, dlag, F, dF)
        bt = np.empty(len(dose_t))
        for d in range(len(dose_t)):
            bt[d] = dose_t[d] + lag[dose_r[d] % R1]
        order = np.argsort(bt, kind="mergesort")
        inside = bt[(bt > stops[0]) & (bt < stops[-1])]
        bounds = np.unique(np.concatenate((stops, inside)))
        return bt, order, bounds, lag, dlag, F, dF

    @numba.njit(inline="always")
    def apply_doses(t0, d, bt, order, dose_r, dose_a, z, p, u, u0, seg, sens, dlag, F, dF, fa, fb):
        jumped = False
        while d < len(bt) and bt[order[d]] <= t0:
            q = order[d]
            d += 1
            r = dose_r[q] % R1
            i = route_state[r]
            if sens:
                rhs(t0, z[:n], p, u, fa)
            jumped = True
            if dose_r[q] >= R:  # a lagged infusion starts or ends: its input rate changes
                slot = first_slot + r
                u[slot] += dose_a[q]
                for row in range(seg, u0.shape[0]):
                    u0[row, slot] += dose_a[q]
                if sens:
                    rhs(t0, z[:n], p, u, fb)
                    for row in range(n):
                        for j in range(k):
                            z[n + row * m + n + j] += (fa[row] - fb[row]) * dlag[r, j]
                continue
            z[i] += F[r] * dose_a[q]
            if not sens:
                continue
            rhs(t0, z[:n], p, u, fb)
            for row in range(n):
                for j in range(k):
                    z[n + row * m + n + j] += (fa[row] - fb[row]) * dlag[r, j]
            for j in range(k):
                z[n + i * m + n + j] += dose_a[q] * dF[r, j]
        return d, jumped

    @numba.njit(inline="always")
    def enter(stops, u0, du, t, u):
        seg = min(max(np.searchsorted(stops, t, side="right") - 1, 0), len(stops) - 2)
        for j in range(u.shape[0]):
            u[j] = u0[seg, j] + (t - stops[seg]) * du[seg, j]
        return seg, stops[seg]

    return schedule, apply_doses, enter


@functools.lru_cache(maxsize=CACHE_SIZE)
def integrator(system: OdeSystem, method: str = "explicit") -> Integrator:
    """The compiled :class:`Integrator` of ``system`` (cached by the system's content and method)."""
    deriv = _make_derivative(system)
    if method == "implicit":
        one = implicit_loop(
            system,
            deriv,
            _make_initial_step(deriv),
            _norm(),
            _unpack_fn(),
            _make_dosing(system),
            (OK, TOO_MANY_STEPS, NOT_FINITE),
        )
        return Integrator(one, _make_many(one, len(system.states)))
    if method != "explicit":
        raise ValueError(f"unknown ODE method {method!r}; one of {METHODS}")
    tableau = DOPRI5
    one = _make_loop(
        len(system.states),
        len(system.params),
        deriv,
        _make_step(deriv, tableau),
        _make_controller(tableau.order),
        _make_dense(tableau),
        _make_initial_step(deriv),
        len(tableau.c),
        _make_dosing(system),
    )
    return Integrator(one, _make_many(one, len(system.states)))


def spec_integrator(spec: ModelSpec) -> Integrator:
    """The compiled integrator of ``spec``'s system with the spec's ``dynamics.method``."""
    return integrator(ode_system(spec), spec.method)


def _make_loop(n, k, deriv, step, factor, dense, initial_step, stages, dosing):
    """The integration loop (:data:`_LOOP`) with one array per stage, compiled by Numba."""
    import numba

    ks = ", ".join(f"k{j}" for j in range(stages))
    alloc = "\n".join(f"    k{j} = np.empty(size)" for j in range(stages))
    source = _LOOP.format(ks=ks, alloc=alloc, last=f"k{stages - 1}")
    namespace = dict(
        np=np,
        n=n,
        k=k,
        m=n + k,
        deriv=deriv,
        step=step,
        factor=factor,
        dense=dense,
        initial_step=initial_step,
        schedule=dosing[0],
        apply_doses=dosing[1],
        enter=dosing[2],
        norm=_norm(),
        start=start_fn(),
        unpack=_unpack_fn(),
        OK=OK,
        TOO_MANY_STEPS=TOO_MANY_STEPS,
        NOT_FINITE=NOT_FINITE,
    )
    exec(
        compile(source, "<twinbayes rk loop>", "exec"), namespace
    )  # a fixed template, stage names only
    return numba.njit(namespace["integrate"])


_LOOP = """
def integrate(p, y0, times, stops, dose_t, dose_r, dose_a, u0_in, du, rtol, atol, max_step, max_steps, sens):
    u0 = u0_in.copy()  # lagged infusions change the rates they carry (apply_doses)
    size, T, order, Z, z, r = start(y0, times, stops[0], n, m, sens)
{alloc}
    ynew, errv, tmp, d = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    fa, fb = np.empty(n), np.empty(n)
    jy, jp = np.zeros((n, n)), np.zeros((n, max(k, 1)))
    u = np.empty(u0.shape[1])
    bt, dorder, bounds, lag, dlag, F, dF = schedule(p, stops, dose_t, dose_r)
    status, steps, t, h, nd, prev = OK, 0, 0.0, -1.0, 0, -1
    for b in range(len(bounds) - 1):
        if r >= T:
            break
        t0, t1 = bounds[b], bounds[b + 1]
        seg, s0 = enter(stops, u0, du, t0, u)  # the inputs are linear from s0 = stops[seg]
        nd, jumped = apply_doses(t0, nd, bt, dorder, dose_r, dose_a, z, p, u, u0, seg, sens, dlag, F, dF, fa, fb)
        if seg != prev and seg > 0:  # an infusion starting or ending at t0: the inputs jump
            for j in range(u.shape[0]):
                end = u0[seg - 1, j] + du[seg - 1, j] * (t0 - stops[seg - 1])
                if abs(end - u0[seg, j]) > 1e-9 * (1.0 + abs(u0[seg, j])):
                    jumped = True
        if b == 0 or jumped:  # otherwise the last stage is f(t0, z) (FSAL; inputs are continuous)
            deriv(t0, z, p, u, sens, k0, jy, jp)
            if jumped:
                h = -1.0  # a new initial step after a dose
        prev = seg
        if h <= 0.0:
            h = initial_step(t0, t1, z, k0, p, u, jy, jp, tmp, k1, d, rtol, atol, max_step, n)
        t = t0
        while t < t1:
            if steps >= max_steps:
                status = TOO_MANY_STEPS
                break
            last = t + h >= t1 - 1e-12 * max(1.0, abs(t1))
            hs = t1 - t if last else h
            step(t, hs, s0, seg, z, {ks}, ynew, errv, p, u, u0, du, sens, jy, jp, size)
            err = norm(errv, z, ynew, rtol, atol, size)
            steps += 1
            fac = factor(err)
            if not np.isfinite(err) or err > 1.0:  # rejected
                h = hs * fac
                if h < 1e-14 * max(1.0, abs(t)):
                    status = NOT_FINITE
                    break
                continue
            t_new = t1 if last else t + hs
            while r < T and times[order[r]] <= t_new:  # dense output between steps
                dense((times[order[r]] - t) / hs, hs, z, ynew, {ks}, Z[order[r]], size)
                r += 1
            t = t_new
            for i in range(size):
                z[i] = ynew[i]
                k0[i] = {last}[i]
            if not last or fac < 1.0:
                h = min(hs * fac, max_step)
        if status != OK:
            break
    Y, S = unpack(Z, status, n, m, sens)
    return Y, S, status, t, z[:n].copy()
"""
"""The integration loop: segments between input knots (each step sees a smooth
right-hand side), accepted and rejected steps, dense output at the output times
(outputs do not shorten steps).  ``status`` is ``TOO_MANY_STEPS`` or ``NOT_FINITE``
on failure, with ``Y`` all NaN.  A template so that each stage is its own array."""


@functools.lru_cache(maxsize=1)
def _unpack_fn():
    """``unpack(Z, status, n, m, sens) -> (Y, S)``: states (NaN after a failure) and sensitivities from the packed rows."""
    import numba

    @numba.njit(inline="always")
    def unpack(Z, status, n, m, sens):
        T = Z.shape[0]
        Y = np.empty((T, n))
        S = np.zeros((T, n, m))
        for q in range(T):
            for i in range(n):
                Y[q, i] = Z[q, i] if status == 0 else np.nan
                if sens:
                    for j in range(m):
                        S[q, i, j] = Z[q, n + i * m + j]
        return Y, S

    return unpack


def _make_many(one, n: int):
    """``many(P, Y0, ...)``: one solve per row of ``P``/``Y0``, states only.

    A Python loop over the compiled ``one`` (about 10 us of call overhead per draw: 0.35 s for
    4000 draws) rather than a second Numba function around it, whose compilation cost 15-20 s
    per system and process, more than every solve a fit's predictive checks need.
    """

    def many(P, Y0, times, stops, dose_t, dose_r, dose_a, u0, du, rtol, atol, max_step, max_steps):
        out = np.empty((P.shape[0], len(times), n))
        for s in range(P.shape[0]):
            out[s] = one(P[s], Y0[s], times, stops, dose_t, dose_r, dose_a, u0, du, rtol, atol,
                         max_step, max_steps, False)[0]  # fmt: skip
        return out

    return many


def _settings(spec: ModelSpec) -> tuple[float, float, float, int]:
    return (
        spec.rtol or RTOL,
        spec.atol or ATOL,
        spec.max_step or np.inf,
        spec.max_steps or MAX_STEPS,
    )


def solve(
    spec: ModelSpec, p: np.ndarray, y0: np.ndarray, forcing: Forcing, sens: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """States (and sensitivities) at the output times for one parameter vector.

    Raises
    ------
    OdeError
        When the integrator fails (see the module docstring).
    """
    system = ode_system(spec)
    p = np.asarray(p, float)
    Y, S, status, t, y = spec_integrator(spec).one(
        p, np.asarray(y0, float), *forcing.arrays_for(), *_settings(spec), sens
    )
    if status != OK:
        raise OdeError(_failure(spec, status, t, _stiffness(system, t, y, p, forcing)))
    return Y, S


def _stiffness(
    system: OdeSystem, t: float, y: np.ndarray, p: np.ndarray, forcing: Forcing
) -> float:
    """The largest eigenvalue magnitude of ``df/dy`` at ``(t, y)`` (NaN where it cannot be evaluated)."""
    seg = int(
        np.clip(np.searchsorted(forcing.stops, t, "right") - 1, 0, max(len(forcing.u0) - 1, 0))
    )
    u = (
        forcing.u0[seg] + (t - forcing.stops[seg]) * forcing.du[seg]
        if len(forcing.u0)
        else np.zeros(len(system.inputs))
    )
    n = len(system.states)
    jy, jp = np.zeros((n, n)), np.zeros((n, max(len(system.params), 1)))
    with np.errstate(all="ignore"):
        system.rhs_jac(float(t), np.asarray(y, float), p, u, np.empty(n), jy, jp)
    if not np.all(np.isfinite(jy)):
        return float("nan")
    return float(np.abs(np.linalg.eigvals(jy)).max())


def _failure(spec: ModelSpec, status: int, t: float, rate: float = float("nan")) -> str:
    """What went wrong, where, and what to do: stiffness is named when the Jacobian shows it.

    An explicit method is stable only for steps ``h <~ 3.3 / |lambda_max|`` (the
    stability region of DOPRI5 on the negative real axis; Hairer & Wanner 1996,
    sec. IV.2); when that bound, over the time solved, needs more steps than
    allowed, the system is stiff at these parameters.
    """
    max_steps = _settings(spec)[3]
    unit = spec.time_unit
    if status == TOO_MANY_STEPS and np.isfinite(rate) and rate > 0:
        needed = rate * max(t, 1e-300) / 3.3
        if spec.method == "explicit" and needed > 0.2 * max_steps:
            why = (
                f"is stiff: at t = {t:g} {unit} the Jacobian has an eigenvalue of magnitude {rate:.3g} /{unit}, "
                f"so the explicit method's steps stay below about {3.3 / rate:.3g} {unit} "
                f"(~{needed:.3g} steps to reach t = {t:g} {unit}; dynamics.max_steps = {max_steps}). "
                'Declare method = "implicit" under [dynamics] (an L-stable ESDIRK method for stiff systems)'
            )
            return f"spec {spec.name!r} ({spec.source}): the ODE solve {why}"
    why = (
        f"needed more than {max_steps} steps (dynamics.max_steps) before t = {t:g} {unit}: the system "
        + ("is stiff or " if spec.method == "explicit" else "")
        + "grows without bound at these parameters"
        if status == TOO_MANY_STEPS
        else f"produced non-finite values near t = {t:g} {unit} (division by zero, log of a negative number, overflow?"
        + (
            ", or a Newton iteration that does not converge however short the step)"
            if spec.method == "implicit"
            else ")"
        )
    )
    return f"spec {spec.name!r} ({spec.source}): the ODE solve {why}"


# ---------------------------------------------------------------- PyTensor Op


@functools.cache
def _op_type():
    """The ``OdeSolveOp`` class, created and given its Numba implementation once per process."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class OdeSolveOp(Op):
        """``(p, y0) -> (Y, S)``: states at the output times and their sensitivities.

        The gradient of any scalar ``L(Y)`` is ``sum_ti dL/dY[t, i] S[t, i, :]``
        (forward sensitivity method).  ``S`` itself has no gradient (NUTS needs
        first derivatives only; the connection pattern says so).
        """

        __props__ = ("key",)

        def __init__(self, spec: ModelSpec, forcing: Forcing):
            self.spec = spec
            self.system = ode_system(spec)
            self.forcing = forcing
            self.settings = _settings(spec)
            self.key = f"{self.system.key}-{spec.method}-{forcing.key}-{self.settings}"

        def make_node(self, p, y0):
            p = pt.as_tensor_variable(p).astype("float64")
            y0 = pt.as_tensor_variable(y0).astype("float64")
            T, n = len(self.forcing.times), len(self.system.states)
            m = n + len(self.system.params)
            return Apply(
                self,
                [p, y0],
                [
                    pt.tensor(dtype="float64", shape=(T, n)),
                    pt.tensor(dtype="float64", shape=(T, n, m)),
                ],
            )

        def perform(self, node, inputs, outputs):
            p, y0 = inputs
            arrays = self.forcing.arrays_for()
            Y, S, _, _, _ = spec_integrator(self.spec).one(p, y0, *arrays, *self.settings, True)
            outputs[0][0], outputs[1][0] = (
                Y,
                S,
            )  # a failed solve is NaN: non-finite log density, a divergence

        def pullback(self, inputs, outputs, cotangents):
            p, y0 = inputs
            gY = cotangents[0]
            if isinstance(gY.type, DisconnectedType):
                return [p.zeros_like(), y0.zeros_like()]
            n = len(self.system.states)
            g = pt.tensordot(gY, outputs[1], axes=[[0, 1], [0, 1]])
            return [g[n:], g[:n]]

        def connection_pattern(self, node):
            return [[True, False], [True, False]]

    _register_numba(OdeSolveOp)
    return OdeSolveOp


def ode_op(spec: ModelSpec, forcing: Forcing):
    """The PyTensor Op solving ``spec`` on ``forcing``."""
    return _op_type()(spec, forcing)


def _register_numba(op_type) -> None:
    from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key

    @register_funcify_and_cache_key(op_type)
    def _funcify(op, node=None, **kwargs):
        import numba

        integrate = spec_integrator(op.spec).one
        times, stops, dose_t, dose_r, dose_a, u0, du = op.forcing.arrays_for()
        rtol, atol, max_step, max_steps = op.settings
        # read from arrays, not closed over as constants: Numba would type the constants as
        # literals and compile `integrate` for them alone, a signature no call from Python has
        step_budget, with_sens = np.array([max_steps], np.int64), np.array([True])

        @numba.njit
        def solve_op(p, y0):
            Y, S, _, _, _ = integrate(p, y0, times, stops, dose_t, dose_r, dose_a, u0, du, rtol,
                                      atol, max_step, step_budget[0], with_sens[0])  # fmt: skip
            return Y, S

        return solve_op, None


# ---------------------------------------------------------------- entry point


def boluses(
    spec: ModelSpec, doses: Mapping[str, tuple] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dose events: (nominal times, codes, amounts or rates).

    Code ``r`` (the route's index in :func:`dose_routes`): a bolus into route ``r``'s state.
    Code ``R + r`` (``R`` routes): a change of route ``r``'s infusion rate, ``+ amount /
    duration`` at the start of an infusion by a route with a lag time and ``-`` that at its
    end; both move with the lag (``Integrator``).  Infusions by routes without a lag are
    fixed inputs instead (:func:`infusions`).
    """
    routes = dose_routes(spec)
    rows = []
    for route, entry in (doses or {}).items():
        t, amount, duration = unpack_doses(entry)
        r = routes.index(route)
        bolus = duration == 0
        rows += [(ti, r, a) for ti, a in zip(t[bolus], amount[bolus])]
        if spec.routes[route].lag is not None:
            on = duration > 0
            rate = amount[on] / duration[on]
            rows += [(ti, len(routes) + r, v) for ti, v in zip(t[on], rate)]
            rows += [(ti, len(routes) + r, -v) for ti, v in zip(t[on] + duration[on], rate)]
    if not rows:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
    t, r, a = zip(*rows)
    return np.array(t, float), np.array(r, np.int64), np.array(a, float)


def infusions(
    spec: ModelSpec, doses: Mapping[str, tuple] | None
) -> dict[str, tuple[np.ndarray, ...]]:
    """Infusion slot -> (starts, ends, rates) of the zero-order infusions by each route without
    a lag time (fixed inputs of the compiled system; a lagged route's infusions move with its
    lag and are dose events: :func:`boluses`)."""
    per_route: dict[str, list] = {r: [] for r in dose_routes(spec)}
    for route, entry in (doses or {}).items():
        t, amount, duration = unpack_doses(entry)
        on = duration > 0
        if spec.routes[route].lag is None:
            per_route[route] += zip(t[on], t[on] + duration[on], amount[on] / duration[on])
    return {
        INFUSION + r: tuple(np.array(col, float) for col in zip(*rows))
        if rows
        else (np.zeros(0),) * 3
        for r, rows in per_route.items()
    }


def ode_trajectories(
    spec: ModelSpec,
    env: Mapping[str, Any],
    times: np.ndarray,
    states: list[str],
    backend=NUMPY,
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    doses: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """States at ``times`` from the initial values ``dynamics.initial`` at t = 0.

    ``doses`` (route -> (times, amounts[, durations])): a bolus (duration 0) makes the
    route's state jump by the amount at the dose time, an infusion adds ``amount / duration``
    to its rate of change from the dose time for ``duration``; the integrator restarts at
    each.

    ``env`` holds parameters, derived quantities and input baselines.  With
    NumPy draw arrays in ``env`` (length S) each result has shape
    ``times.shape + (S,)``, like the exact solutions; failed solves are NaN.
    ``inputs`` maps each forcing input of the spec to its (times, values).
    """
    system = ode_system(spec)
    forcing = Forcing.for_doses(spec, times, doses, inputs)
    y0 = [spec.initial[s](env, backend) for s in system.states]
    p = [env[q] for q in system.params]
    if backend is PYTENSOR:
        import pytensor.tensor as pt

        def vector(values):
            return (
                pt.stack([pt.as_tensor(v, dtype="float64") for v in values])
                if values
                else pt.zeros(0)
            )

        Y, _ = ode_op(spec, forcing)(vector(p), vector(y0))
        return {s: Y[:, system.states.index(s)] for s in states}
    shape = np.broadcast_shapes(*(np.shape(v) for v in [*p, *y0]))
    if shape == ():
        Y, _ = solve(spec, np.array(p, float), np.array(y0, float), forcing)
        return {s: Y[:, system.states.index(s)] for s in states}
    P = (
        np.stack([np.broadcast_to(np.asarray(v, float), shape) for v in p], axis=1)
        if p
        else np.zeros(shape + (0,))
    )
    Y0 = np.stack([np.broadcast_to(np.asarray(v, float), shape) for v in y0], axis=1)
    Y = spec_integrator(spec).many(
        np.ascontiguousarray(P),
        np.ascontiguousarray(Y0),
        *forcing.arrays_for(),
        *_settings(spec),
    )
    return {s: Y[:, :, system.states.index(s)].T for s in states}
