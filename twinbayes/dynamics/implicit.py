"""An implicit integrator for stiff specs: ESDIRK with forward sensitivities by the staggered direct method.

A stiff system (target binding 1e3-1e6 times faster than elimination, fast
receptor turnover) limits an explicit method's step to its stability bound,
``h <~ 3.3 / |lambda_max|``, however smooth the solution.  Specs that declare
``dynamics.method = "implicit"`` are integrated with the L-stable,
stiffly accurate ESDIRK3(2)4L[2]SA pair (Kennedy & Carpenter 2003;
:data:`~twinbayes.dynamics.tableau.ESDIRK3`), whose step is limited by
accuracy only.

Each implicit stage ``Y_i = y + h sum_{j<i} a_ij f(Y_j) + h gamma f(Y_i)`` is
solved by a simplified Newton iteration with ``M = I - h gamma J``, ``J``
the symbolic Jacobian of the spec (:mod:`twinbayes.spec.symbolic`) at the
last converged stage.  The sensitivities ``S = dy/d(y0, p)`` follow the same
stages exactly (the staggered direct method; Caracotsios & Stewart 1985,
Comput Chem Eng 9:359-365): with ``J_i`` and ``f_p,i`` at the converged
``Y_i``, ``(I - h gamma J_i) S_i = S + h sum_{j<i} a_ij G_j + h gamma [0, f_p,i]``
and ``G_i = J_i S_i + [0, f_p,i]``, a linear solve per stage.  The local error
estimate ``h sum_j e_j (f_j, G_j)`` is filtered through ``M^{-1}`` as in
Hairer & Wanner (1996, Solving ODEs II, sec. IV.8, eq. 8.20) so that it stays
bounded on stiff components, and controls states and sensitivities alike.
Outputs between steps come from the cubic Hermite interpolant of the step's
end values and derivatives (third order, as the method).

Restarts at stops, bolus jumps, inputs and the failure rules are those of the
explicit integrator (:mod:`twinbayes.dynamics.ode`): a Newton iteration that
does not converge shrinks the step; a step below ``1e-14 t`` or more than
``max_steps`` steps is a failed solve (NaN, never a silent result).
"""

from __future__ import annotations

import numpy as np

from .packed import start_fn
from .tableau import ESDIRK3, DiagonallyImplicitTableau

__all__ = ["implicit_loop"]

NEWTON_MAX_ITER = 7
NEWTON_TOL = 0.03
"""Newton stops when the scaled update is below this fraction of the error tolerance."""


def _linear_algebra():
    """``lu(M, piv, n)`` (in place, partial pivoting) and ``lu_solve(M, piv, B, n, cols)`` (in place).

    Written out because the systems are tiny (a few states) and solved several
    times per step inside the compiled loop, where LAPACK's call and allocation
    overhead would dominate.
    """
    import numba

    @numba.njit(inline="always")
    def lu(M, piv, n):
        for k in range(n):
            p = k
            for i in range(k + 1, n):
                if abs(M[i, k]) > abs(M[p, k]):
                    p = i
            piv[k] = p
            if p != k:
                for j in range(n):
                    M[k, j], M[p, j] = M[p, j], M[k, j]
            if M[k, k] == 0.0:
                return False
            for i in range(k + 1, n):
                M[i, k] /= M[k, k]
                for j in range(k + 1, n):
                    M[i, j] -= M[i, k] * M[k, j]
        return True

    @numba.njit(inline="always")
    def lu_solve(M, piv, B, n, cols):
        for c in range(cols):
            for k in range(n):
                if piv[k] != k:
                    B[k, c], B[piv[k], c] = B[piv[k], c], B[k, c]
            for i in range(n):
                for j in range(i):
                    B[i, c] -= M[i, j] * B[j, c]
            for i in range(n - 1, -1, -1):
                for j in range(i + 1, n):
                    B[i, c] -= M[i, j] * B[j, c]
                B[i, c] /= M[i, i]

    return lu, lu_solve


def implicit_loop(system, deriv, initial_step, norm, unpack, dosing, status_codes, tableau=ESDIRK3):
    """The compiled integration loop of ``system`` with ``tableau``.

    Same signature and results as the explicit loop:
    ``integrate(p, y0, times, stops, dose_t, dose_r, dose_a, u0, du, rtol, atol, max_step,
    max_steps, sens) -> (Y, S, status, t, y_last)``; doses and their sensitivity jumps by
    ``dosing`` (:func:`twinbayes.dynamics.ode._make_dosing`).
    """
    import numba

    n, k = len(system.states), len(system.params)
    m = n + k
    rhs, rhs_jac = system.rhs, system.rhs_jac
    lu, lu_solve = _linear_algebra()
    stage = _make_stage(rhs, rhs_jac, lu, lu_solve, norm, n, m, tableau)
    filtered = _make_filter(lu_solve, n, m)
    start = start_fn()
    schedule, apply_doses, enter = dosing
    OK, TOO_MANY_STEPS, NOT_FINITE = status_codes
    e, s = tableau.e.copy(), len(tableau.c)
    expo = -1.0 / (tableau.embedded_order + 1)

    @numba.njit
    def integrate(
        p,
        y0,
        times,
        stops,
        dose_t,
        dose_r,
        dose_a,
        u0_in,
        du,
        rtol,
        atol,
        max_step,
        max_steps,
        sens,
    ):
        u0 = u0_in.copy()  # lagged infusions change the rates they carry (apply_doses)
        size, T, order, Z, z, r = start(y0, times, stops[0], n, m, sens)
        K = np.zeros((s, size))  # stage derivatives: f and, with sensitivities, G = J S + [0, f_p]
        znew, errv, tmp, d, base = (
            np.empty(size),
            np.empty(size),
            np.empty(size),
            np.empty(size),
            np.empty(size),
        )
        M, W = np.empty((n, n)), np.empty((n, max(m, 1)))
        piv = np.zeros(n, np.int64)
        jy, jp = np.zeros((n, n)), np.zeros((n, max(k, 1)))
        u = np.empty(u0.shape[1])
        fa, fb = np.empty(n), np.empty(n)
        bt, dorder, bounds, lag, dlag, F, dF = schedule(p, stops, dose_t, dose_r)
        status, steps, t, h, nd = OK, 0, 0.0, -1.0, 0
        for b in range(len(bounds) - 1):
            if r >= T:
                break
            t0, t1 = bounds[b], bounds[b + 1]
            seg, s0 = enter(stops, u0, du, t0, u)  # the inputs are linear from s0
            nd, _ = apply_doses(
                t0, nd, bt, dorder, dose_r, dose_a, z, p, u, u0, seg, sens, dlag, F, dF, fa, fb
            )
            deriv(t0, z, p, u, sens, K[0], jy, jp)
            h = initial_step(t0, t1, z, K[0], p, u, jy, jp, tmp, d, znew, rtol, atol, max_step, n)
            rhs_jac(t0, z[:n], p, u, tmp, jy, jp)  # the Jacobian at (t0, y) for the first Newton
            t = t0
            while t < t1:
                if steps >= max_steps:
                    status = TOO_MANY_STEPS
                    break
                last = t + h >= t1 - 1e-12 * max(1.0, abs(t1))
                hs = t1 - t if last else h
                steps += 1
                converged = stage(t, hs, s0, seg, z, K, znew, base, tmp, M, W, piv, jy, jp, p, u, u0,
                                  du, sens, rtol, atol, size)  # fmt: skip
                err = np.inf
                if converged:
                    for i in range(size):  # local error estimate
                        acc = 0.0
                        for j in range(s):
                            acc += e[j] * K[j, i]
                        errv[i] = hs * acc
                    filtered(errv, M, piv, W, sens)
                    err = norm(errv, z, znew, rtol, atol, size)
                if not np.isfinite(err) or err > 1.0:  # rejected: J back at (t, y), a shorter step
                    shrink = 0.25 if not converged else 0.2
                    if np.isfinite(err):
                        shrink = max(0.2, 0.9 * err**expo)
                    h = hs * shrink
                    for j in range(u.shape[0]):
                        u[j] = u0[seg, j] + (t - s0) * du[seg, j]
                    rhs_jac(t, z[:n], p, u, tmp, jy, jp)
                    if h < 1e-14 * max(1.0, abs(t)):
                        status = NOT_FINITE
                        break
                    continue
                t_new = t1 if last else t + hs
                while r < T and times[order[r]] <= t_new:  # cubic Hermite between the step's ends
                    th = (times[order[r]] - t) / hs
                    h00, h10 = (1 + 2 * th) * (1 - th) ** 2, th * (1 - th) ** 2
                    h01, h11 = th * th * (3 - 2 * th), th * th * (th - 1)
                    row = Z[order[r]]
                    for i in range(size):
                        row[i] = (
                            h00 * z[i] + h01 * znew[i] + hs * (h10 * K[0, i] + h11 * K[s - 1, i])
                        )
                    r += 1
                t = t_new
                for i in range(size):  # stiffly accurate: the last stage is the new state (FSAL)
                    z[i] = znew[i]
                    K[0, i] = K[s - 1, i]
                fac = 5.0 if err == 0.0 else min(5.0, max(0.2, 0.9 * err**expo))
                if not last or fac < 1.0:
                    h = min(hs * fac, max_step)
            if status != OK:
                break
        Y, S = unpack(Z, status, n, m, sens)
        return Y, S, status, t, z[:n].copy()

    return integrate


def _make_stage(
    rhs, rhs_jac, lu, lu_solve, norm, n: int, m: int, tableau: DiagonallyImplicitTableau
):
    """``stage(...) -> converged``: the implicit stages of one step of size ``hs`` from ``(t, z)``.

    On entry ``K[0]`` holds ``dz/dt`` at ``(t, z)`` and ``jy`` the Jacobian there; on
    exit ``K[i]`` holds stage ``i``'s derivatives, ``znew`` the last stage (the new
    state and sensitivities), ``M`` the LU factors of ``I - hs gamma J`` at the last
    stage and ``jy, jp`` the Jacobians there.  ``False`` when a Newton iteration fails.
    """
    import numba

    a, c, gamma, s = tableau.a.copy(), tableau.c.copy(), float(tableau.gamma), len(tableau.c)

    @numba.njit(inline="always")
    def factor(M, piv, jy, hg):
        for i in range(n):
            for j in range(n):
                M[i, j] = (1.0 if i == j else 0.0) - hg * jy[i, j]
        return lu(M, piv, n)

    @numba.njit(inline="always")
    def stage(t, hs, t0, seg, z, K, znew, base, tmp, M, W, piv, jy, jp, p, u, u0, du, sens,
              rtol, atol, size):  # fmt: skip
        hg = hs * gamma
        for st in range(1, s):
            ts = t + c[st] * hs
            for j in range(u.shape[0]):
                u[j] = u0[seg, j] + (ts - t0) * du[seg, j]
            for i in range(size):
                acc = 0.0
                for j in range(st):
                    acc += a[st, j] * K[j, i]
                base[i] = z[i] + hs * acc
            if not factor(M, piv, jy, hg):  # simplified Newton with the last Jacobian
                return False
            for i in range(n):  # predictor: the previous stage's slope
                znew[i] = base[i] + hg * K[st - 1, i]
            done = False
            for _ in range(NEWTON_MAX_ITER):
                rhs(ts, znew[:n], p, u, tmp)
                for i in range(n):
                    W[i, 0] = base[i] + hg * tmp[i] - znew[i]
                lu_solve(M, piv, W, n, 1)
                for i in range(n):
                    tmp[i] = W[i, 0]
                    znew[i] += W[i, 0]
                dn = norm(tmp, znew, base, rtol, atol, n)
                if not np.isfinite(dn):
                    return False
                if dn <= NEWTON_TOL:
                    done = True
                    break
            if not done:
                return False
            rhs_jac(ts, znew[:n], p, u, tmp, jy, jp)  # f, J and f_p at the converged stage
            for i in range(n):
                K[st, i] = tmp[i]
            if not factor(M, piv, jy, hg):
                return False
            if sens:  # (I - hs gamma J_i) S_i = base_S + hs gamma [0, f_p]
                for i in range(n):
                    for j in range(m):
                        W[i, j] = base[n + i * m + j] + (hg * jp[i, j - n] if j >= n else 0.0)
                lu_solve(M, piv, W, n, m)
                for i in range(n):
                    for j in range(m):
                        znew[n + i * m + j] = W[i, j]
                for i in range(n):  # G_i = J_i S_i + [0, f_p]
                    for j in range(m):
                        acc = jp[i, j - n] if j >= n else 0.0
                        for q in range(n):
                            acc += jy[i, q] * W[q, j]
                        K[st, n + i * m + j] = acc
        return True

    return stage


def _make_filter(lu_solve, n: int, m: int):
    """``filtered(errv, M, piv, W, sens)``: the error estimate replaced by ``M^{-1}`` times it, in place.

    ``M = I - h gamma J`` (LU factors from the last stage) damps the estimate on
    stiff components, where the raw ``h sum e_j f_j`` grows like ``h |lambda|``
    (Hairer & Wanner 1996, sec. IV.8; Shampine 1980).  Each sensitivity column is
    filtered alike.
    """
    import numba

    @numba.njit(inline="always")
    def filtered(errv, M, piv, W, sens):
        for i in range(n):
            W[i, 0] = errv[i]
        lu_solve(M, piv, W, n, 1)
        for i in range(n):
            errv[i] = W[i, 0]
        if sens:
            for i in range(n):
                for j in range(m):
                    W[i, j] = errv[n + i * m + j]
            lu_solve(M, piv, W, n, m)
            for i in range(n):
                for j in range(m):
                    errv[n + i * m + j] = W[i, j]

    return filtered
