"""The packed state of the ODE engine, shared by the explicit and the implicit stepper.

A run of the engine integrates ``z = (y, vec S)``: the states ``y`` and, with sensitivities,
their derivatives ``S = dy/dp`` (``n`` states x ``m`` parameters incl. the initial states),
``S(t0) = [I 0]``.  Outputs are written to rows ``Z`` in the order of their times.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["start_fn"]


@functools.lru_cache(maxsize=1)
def start_fn():
    """``start(y0, times, t0, n, m, sens) -> (size, T, order, Z, z, r)``: the packed state
    ``z = (y0, vec I)`` and the output rows ``Z`` (NaN), the outputs at or before ``t0`` filled."""
    import numba

    @numba.njit(inline="always")
    def start(y0, times, t0, n, m, sens):
        size = n + n * m if sens else n
        T = len(times)
        order = np.argsort(times)
        Z = np.full((T, size), np.nan)
        z = np.zeros(size)
        z[:n] = y0
        if sens:
            for i in range(n):
                z[n + i * m + i] = 1.0
        r = 0
        while r < T and times[order[r]] <= t0:
            Z[order[r]] = z
            r += 1
        return size, T, order, Z, z, r

    return start
