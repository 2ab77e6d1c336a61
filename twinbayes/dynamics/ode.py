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
right-hand side.

Failure is never silent: a system that needs more than ``dynamics.max_steps``
steps (stiff at these parameters, or blowing up) or produces non-finite
values returns NaN, which makes the log density non-finite and is reported
by the sampler as a divergence; outside sampling, :func:`solve` raises
:class:`OdeError` naming the spec and where it stopped.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec
from ..spec.symbolic import derivative, helpers, parse, to_statements

__all__ = ["OdeError", "OdeSystem", "ode_system", "Forcing", "ode_trajectories"]

RTOL = 1e-6
ATOL = 1e-8
MAX_STEPS = 20_000

OK, TOO_MANY_STEPS, NOT_FINITE = 0, 1, 2


class OdeError(RuntimeError):
    """An ODE solve failed (stiffness, blow-up, or too many steps)."""


# ---------------------------------------------------------------- code generation


@dataclass(frozen=True)
class OdeSystem:
    """A spec's right-hand sides compiled for the integrator.

    Attributes
    ----------
    states : tuple of str
        State order in ``y``.
    params : tuple of str
        Symbols in ``p``: parameters, derived quantities and input baselines the
        right-hand sides read (in this order of the spec).
    inputs : tuple of str
        Forcing inputs in ``u``.
    source : str
        The generated Python source (for inspection).
    """

    states: tuple[str, ...]
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    source: str
    rhs: Any
    rhs_jac: Any

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


_CACHE: dict[str, OdeSystem] = {}
_LOCK = threading.Lock()


def ode_system(spec: ModelSpec) -> OdeSystem:
    """Generate and compile the right-hand side and Jacobians of ``spec`` (cached by spec text)."""
    key = spec.sha256
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build_system(spec)
        return _CACHE[key]


def _build_system(spec: ModelSpec) -> OdeSystem:
    import numba

    states = tuple(spec.states)
    inputs = tuple(spec.inputs)
    used = set().union(*(spec.rhs[s].symbols for s in states))
    quantities = [*spec.parameters, *spec.derived, *(i.baseline for i in spec.inputs.values() if i.baseline)]
    params = tuple(q for q in quantities if q in used)
    slots = {"t": "t"}
    slots.update({s: f"y[{i}]" for i, s in enumerate(states)})
    slots.update({q: f"p[{i}]" for i, q in enumerate(params)})
    slots.update({u: f"u[{i}]" for i, u in enumerate(inputs)})
    trees = [parse(spec.rhs[s]) for s in states]
    f = [(f"out[{i}]", tree) for i, tree in enumerate(trees)]
    jy = [(f"jy[{i}, {j}]", derivative(tree, s)) for i, tree in enumerate(trees) for j, s in enumerate(states)]
    jp = [(f"jp[{i}, {j}]", derivative(tree, q)) for i, tree in enumerate(trees) for j, q in enumerate(params)]
    lines = ["def rhs(t, y, p, u, out):", *to_statements(f, slots), "    return", ""]
    lines += ["def rhs_jac(t, y, p, u, out, jy, jp):", *to_statements(f + jy + jp, slots), "    return"]
    source = "\n".join(lines) + "\n"
    namespace = {k: (v if k == "math" else numba.njit(v)) for k, v in helpers().items()}
    exec(compile(source, f"<twinbayes ode {spec.name}>", "exec"), namespace)  # generated, see spec.symbolic
    jit = numba.njit(inline="always")  # inlined into the integrator: no call overhead per stage
    return OdeSystem(states, params, inputs, source, jit(namespace["rhs"]), jit(namespace["rhs_jac"]))


# ---------------------------------------------------------------- forcing and time grid


@dataclass(frozen=True)
class Forcing:
    """Output times, and where the integrator must restart: input knots.

    Attributes
    ----------
    times : ndarray
        Output times (any order, repeats allowed).
    stops : ndarray
        0, every input knot inside the output range, and the last output
        time: sorted, unique.  Between stops the inputs are linear.
    u0, du : ndarray
        Input values at the start of interval ``k`` (``stops[k]..stops[k+1]``)
        and their slopes there, shape ``(len(stops) - 1, n_inputs)``.
    """

    times: np.ndarray
    stops: np.ndarray
    u0: np.ndarray
    du: np.ndarray

    @classmethod
    def build(cls, times: np.ndarray, inputs: Mapping[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]) -> "Forcing":
        times = np.asarray(times, float)
        tmax = float(times.max()) if times.size else 0.0
        knots = [np.asarray(inputs[n][0], float) for n in names]
        stops = np.unique(np.concatenate([[0.0, tmax], *[k[(k > 0) & (k < tmax)] for k in knots]]))
        u0 = np.zeros((max(len(stops) - 1, 0), len(names)))
        du = np.zeros_like(u0)
        for j, n in enumerate(names):
            kt, kv = (np.asarray(a, float) for a in inputs[n])
            lo, hi = np.interp(stops[:-1], kt, kv), np.interp(stops[1:], kt, kv)
            u0[:, j], du[:, j] = lo, (hi - lo) / np.diff(stops)
        return cls(times, stops, u0, du)

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for a in (self.times, self.stops, self.u0, self.du):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- the integrator

# Dormand-Prince 5(4) tableau, error weights and dense output (Hairer et al. 1993, sec. II.5-6; dopri5.f)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
_D = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
      701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423)


def _make_integrator(system: OdeSystem):
    """A Numba function ``integrate(p, y0, times, stops, u0, du, rtol, atol, max_step, max_steps, sens)``.

    Returns ``(Y, S, status, t_reached)`` with ``Y[i]`` the states at
    ``times[i]`` and ``S[i]`` their sensitivities to ``(y0, p)`` (shape
    ``(n, n + k)``; zeros unless ``sens``).  Output times between steps come
    from the 4th-order continuous extension of the method, so outputs do not
    shorten steps; input knots do (each step sees a smooth right-hand side).
    """
    import numba

    rhs, rhs_jac = system.rhs, system.rhs_jac
    n, k = len(system.states), len(system.params)
    m = n + k
    c2, c3, c4, c5, c6, c7 = _C[1:]
    (a21,), (a31, a32), (a41, a42, a43), (a51, a52, a53, a54), (a61, a62, a63, a64, a65), (a71, _, a73, a74, a75, a76) = _A[1:]
    e1, _, e3, e4, e5, e6, e7 = _E
    d1, _, d3, d4, d5, d6, d7 = _D

    @numba.njit(inline="always")
    def deriv(t, z, p, u, sens, out, jy, jp):
        y = z[:n]
        if not sens:
            rhs(t, y, p, u, out)
        else:
            rhs_jac(t, y, p, u, out, jy, jp)
            for i in range(n):
                for j in range(m):
                    acc = 0.0
                    for l in range(n):
                        acc += jy[i, l] * z[n + l * m + j]
                    if j >= n:
                        acc += jp[i, j - n]
                    out[n + i * m + j] = acc

    @numba.njit(inline="always")
    def stage(t, hs, c, t0, seg, zs, p, u, u0, du, sens, out, jy, jp):
        ts = t + c * hs
        for j in range(u.shape[0]):
            u[j] = u0[seg, j] + (ts - t0) * du[seg, j]
        deriv(ts, zs, p, u, sens, out, jy, jp)

    @numba.njit(inline="always")
    def norm(v, z_a, z_b, rtol, atol, size):
        acc = 0.0
        for i in range(size):
            sc = atol + rtol * max(abs(z_a[i]), abs(z_b[i]))
            acc += (v[i] / sc) ** 2
        return np.sqrt(acc / size)

    @numba.njit
    def integrate(p, y0, times, stops, u0, du, rtol, atol, max_step, max_steps, sens):
        size = n + n * m if sens else n
        nu = u0.shape[1]
        T = len(times)
        order = np.argsort(times)
        Z = np.full((T, size), np.nan)
        z = np.zeros(size)
        z[:n] = y0
        if sens:
            for i in range(n):
                z[n + i * m + i] = 1.0
        r = 0
        while r < T and times[order[r]] <= stops[0]:
            Z[order[r]] = z
            r += 1
        k1, k2, k3, k4 = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
        k5, k6, k7 = np.empty(size), np.empty(size), np.empty(size)
        tmp, d = np.empty(size), np.empty(size)
        jy = np.zeros((n, n))
        jp = np.zeros((n, max(k, 1)))
        u = np.empty(nu)
        status, steps, t = 0, 0, 0.0
        h = -1.0
        for seg in range(len(stops) - 1):
            if r >= T:
                break
            t0, t1 = stops[seg], stops[seg + 1]
            if seg == 0:  # later segments start from the last stage (FSAL; inputs are continuous)
                for j in range(nu):
                    u[j] = u0[0, j]
                deriv(t0, z, p, u, sens, k1, jy, jp)
            if h <= 0.0:  # initial step from the states (Hairer et al. 1993, sec. II.4, p. 169)
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
                h = min(100.0 * h0, h1, t1 - t0, max_step)
            t = t0
            while t < t1:
                if steps >= max_steps:
                    status = 1
                    break
                last = t + h >= t1 - 1e-12 * max(1.0, abs(t1))
                hs = t1 - t if last else h
                for i in range(size):
                    tmp[i] = z[i] + hs * a21 * k1[i]
                stage(t, hs, c2, t0, seg, tmp, p, u, u0, du, sens, k2, jy, jp)
                for i in range(size):
                    tmp[i] = z[i] + hs * (a31 * k1[i] + a32 * k2[i])
                stage(t, hs, c3, t0, seg, tmp, p, u, u0, du, sens, k3, jy, jp)
                for i in range(size):
                    tmp[i] = z[i] + hs * (a41 * k1[i] + a42 * k2[i] + a43 * k3[i])
                stage(t, hs, c4, t0, seg, tmp, p, u, u0, du, sens, k4, jy, jp)
                for i in range(size):
                    tmp[i] = z[i] + hs * (a51 * k1[i] + a52 * k2[i] + a53 * k3[i] + a54 * k4[i])
                stage(t, hs, c5, t0, seg, tmp, p, u, u0, du, sens, k5, jy, jp)
                for i in range(size):
                    tmp[i] = z[i] + hs * (a61 * k1[i] + a62 * k2[i] + a63 * k3[i] + a64 * k4[i] + a65 * k5[i])
                stage(t, hs, c6, t0, seg, tmp, p, u, u0, du, sens, k6, jy, jp)
                for i in range(size):
                    tmp[i] = z[i] + hs * (a71 * k1[i] + a73 * k3[i] + a74 * k4[i] + a75 * k5[i] + a76 * k6[i])
                stage(t, hs, c7, t0, seg, tmp, p, u, u0, du, sens, k7, jy, jp)
                # tmp: the 5th-order solution at t + hs; k7: its derivative (first stage of the next step)
                for i in range(size):
                    d[i] = hs * (e1 * k1[i] + e3 * k3[i] + e4 * k4[i] + e5 * k5[i] + e6 * k6[i] + e7 * k7[i])
                err = norm(d, z, tmp, rtol, atol, size)
                steps += 1
                if not np.isfinite(err) or err > 1.0:
                    h = hs * (0.2 if not np.isfinite(err) else max(0.2, 0.9 * err**-0.2))
                    if h < 1e-14 * max(1.0, abs(t)):
                        status = 2
                        break
                    continue
                t_new = t1 if last else t + hs
                while r < T and times[order[r]] <= t_new:  # dense output (dopri5.f, CONTD5)
                    th = (times[order[r]] - t) / hs
                    th1 = 1.0 - th
                    row = Z[order[r]]
                    for i in range(size):
                        ydiff = tmp[i] - z[i]
                        bspl = hs * k1[i] - ydiff
                        c5i = hs * (d1 * k1[i] + d3 * k3[i] + d4 * k4[i] + d5 * k5[i] + d6 * k6[i] + d7 * k7[i])
                        row[i] = z[i] + th * (ydiff + th1 * (bspl + th * ((ydiff - hs * k7[i] - bspl) + th1 * c5i)))
                    r += 1
                t = t_new
                for i in range(size):
                    z[i] = tmp[i]
                    k1[i] = k7[i]
                fac = 5.0 if err == 0.0 else min(5.0, max(0.2, 0.9 * err**-0.2))
                if not last or fac < 1.0:
                    h = min(hs * fac, max_step)
            if status != 0:
                break
        Y = np.empty((T, n))
        S = np.zeros((T, n, m))
        for q in range(T):
            for i in range(n):
                Y[q, i] = Z[q, i] if status == 0 else np.nan
                if sens:
                    for j in range(m):
                        S[q, i, j] = Z[q, n + i * m + j]
        return Y, S, status, t

    @numba.njit
    def integrate_many(P, Y0, times, stops, u0, du, rtol, atol, max_step, max_steps):
        out = np.empty((P.shape[0], len(times), n))
        for s in range(P.shape[0]):
            out[s] = integrate(P[s], Y0[s], times, stops, u0, du, rtol, atol, max_step, max_steps, False)[0]
        return out

    integrate.many = integrate_many
    return integrate


_INTEGRATORS: dict[str, Any] = {}


def integrator(system: OdeSystem):
    """The compiled integrator of ``system`` (cached)."""
    with _LOCK:
        if system.key not in _INTEGRATORS:
            _INTEGRATORS[system.key] = _make_integrator(system)
        return _INTEGRATORS[system.key]


def _settings(spec: ModelSpec) -> tuple[float, float, float, int]:
    return (
        spec.rtol or RTOL,
        spec.atol or ATOL,
        spec.max_step or np.inf,
        spec.max_steps or MAX_STEPS,
    )


def solve(spec: ModelSpec, p: np.ndarray, y0: np.ndarray, forcing: Forcing, sens: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """States (and sensitivities) at the output times for one parameter vector.

    Raises
    ------
    OdeError
        When the integrator fails (see the module docstring).
    """
    system = ode_system(spec)
    rtol, atol, max_step, max_steps = _settings(spec)
    Y, S, status, t = integrator(system)(
        np.asarray(p, float), np.asarray(y0, float), forcing.times, forcing.stops, forcing.u0, forcing.du,
        rtol, atol, max_step, max_steps, sens,
    )
    if status != OK:
        raise OdeError(_failure(spec, status, t, max_steps))
    return Y, S


def _failure(spec: ModelSpec, status: int, t: float, max_steps: int) -> str:
    why = (
        f"needed more than {max_steps} steps (dynamics.max_steps) before t = {t:g} {spec.time_unit}: the system is stiff "
        "or grows without bound at these parameters"
        if status == TOO_MANY_STEPS
        else f"produced non-finite values near t = {t:g} {spec.time_unit} (division by zero, log of a negative number, overflow?)"
    )
    return f"spec {spec.name!r} ({spec.source}): the ODE solve {why}"


# ---------------------------------------------------------------- PyTensor Op


def _op_class():
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
            self.key = f"{self.system.key}-{forcing.key}-{self.settings}"

        def make_node(self, p, y0):
            p = pt.as_tensor_variable(p).astype("float64")
            y0 = pt.as_tensor_variable(y0).astype("float64")
            T, n = len(self.forcing.times), len(self.system.states)
            m = n + len(self.system.params)
            return Apply(self, [p, y0], [pt.tensor(dtype="float64", shape=(T, n)), pt.tensor(dtype="float64", shape=(T, n, m))])

        def perform(self, node, inputs, outputs):
            p, y0 = inputs
            f = self.forcing
            Y, S, _, _ = integrator(self.system)(p, y0, f.times, f.stops, f.u0, f.du, *self.settings, True)
            outputs[0][0], outputs[1][0] = Y, S  # a failed solve is NaN: non-finite log density, a divergence

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

    return OdeSolveOp


_OP = None


def ode_op(spec: ModelSpec, forcing: Forcing):
    """The PyTensor Op solving ``spec`` on ``forcing`` (registers its Numba implementation once)."""
    global _OP
    if _OP is None:
        _OP = _op_class()
        _register_numba(_OP)
    return _OP(spec, forcing)


def _register_numba(op_type) -> None:
    from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key

    @register_funcify_and_cache_key(op_type)
    def _funcify(op, node=None, **kwargs):
        import numba

        integrate = integrator(op.system)
        f = op.forcing
        times, stops, u0, du = f.times, f.stops, f.u0, f.du
        rtol, atol, max_step, max_steps = op.settings

        @numba.njit
        def solve_op(p, y0):
            Y, S, _, _ = integrate(p, y0, times, stops, u0, du, rtol, atol, max_step, max_steps, True)
            return Y, S

        return solve_op, None


# ---------------------------------------------------------------- entry point


def ode_trajectories(
    spec: ModelSpec,
    env: Mapping[str, Any],
    times: np.ndarray,
    states: list[str],
    backend=NUMPY,
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """States at ``times`` from the initial values ``dynamics.initial`` at t = 0.

    ``env`` holds parameters, derived quantities and input baselines.  With
    NumPy draw arrays in ``env`` (length S) each result has shape
    ``times.shape + (S,)``, like the exact solutions; failed solves are NaN.
    ``inputs`` maps each forcing input of the spec to its (times, values).
    """
    system = ode_system(spec)
    forcing = Forcing.build(times, inputs or {}, system.inputs)
    y0 = [spec.initial[s](env, backend) for s in system.states]
    p = [env[q] for q in system.params]
    if backend is PYTENSOR:
        import pytensor.tensor as pt

        def vector(values):
            return pt.stack([pt.as_tensor(v, dtype="float64") for v in values]) if values else pt.zeros(0)

        Y, _ = ode_op(spec, forcing)(vector(p), vector(y0))
        return {s: Y[:, system.states.index(s)] for s in states}
    shape = np.broadcast_shapes(*(np.shape(v) for v in [*p, *y0]))
    if shape == ():
        Y, _ = solve(spec, np.array(p, float), np.array(y0, float), forcing)
        return {s: Y[:, system.states.index(s)] for s in states}
    P = np.stack([np.broadcast_to(np.asarray(v, float), shape) for v in p], axis=1) if p else np.zeros(shape + (0,))
    Y0 = np.stack([np.broadcast_to(np.asarray(v, float), shape) for v in y0], axis=1)
    rtol, atol, max_step, max_steps = _settings(spec)
    Y = integrator(system).many(np.ascontiguousarray(P), np.ascontiguousarray(Y0), forcing.times, forcing.stops, forcing.u0, forcing.du, rtol, atol, max_step, max_steps)
    return {s: Y[:, :, system.states.index(s)].T for s in states}
