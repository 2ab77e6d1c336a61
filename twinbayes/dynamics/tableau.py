"""Butcher tableaux as data: what an embedded Runge-Kutta pair is, apart from how it is stepped.

A tableau gives the nodes ``c``, the stage matrix ``a`` (lower triangular),
the weights of the propagated solution ``b``, the weights ``e`` of the error
estimate (propagated minus embedded solution) and, for dense output, the
coefficients ``d`` of the continuous extension.  The stepper in
:mod:`twinbayes.dynamics.ode` reads only these arrays, as diffrax's
``runge_kutta.py`` reads its ``ButcherTableau``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ButcherTableau", "DOPRI5", "DiagonallyImplicitTableau", "ESDIRK3"]


class ButcherTableau(NamedTuple):
    """An explicit embedded Runge-Kutta pair with first-same-as-last stages and a dense output.

    Attributes
    ----------
    c : ndarray, shape (s,)
        Nodes.
    a : ndarray, shape (s, s)
        Stage coefficients, strictly lower triangular; the last row equals ``b`` (FSAL).
    e : ndarray, shape (s,)
        Error weights: ``h sum_j e_j k_j`` estimates the local error.
    d : ndarray, shape (s,)
        Coefficients of the continuous extension (Hairer et al. 1993, sec. II.6).
    order : int
        Order of the propagated solution (the step-size controller uses ``1 / order``).
    """

    c: np.ndarray
    a: np.ndarray
    e: np.ndarray
    d: np.ndarray
    order: int


def _lower(rows: list[list[float]]) -> np.ndarray:
    a = np.zeros((len(rows), len(rows)))
    for i, row in enumerate(rows):
        a[i, : len(row)] = row
    return a


DOPRI5 = ButcherTableau(
    c=np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]),
    a=_lower(
        [
            [],
            [1 / 5],
            [3 / 40, 9 / 40],
            [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        ]
    ),
    e=np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]),
    d=np.array(
        [
            -12715105075 / 11282082432,
            0.0,
            87487479700 / 32700410799,
            -10690763975 / 1880347072,
            701980252875 / 199316789632,
            -1453857185 / 822651844,
            69997945 / 29380423,
        ]
    ),
    order=5,
)
"""Dormand & Prince (1980), J Comput Appl Math 6:19-26; dense output from Hairer et al. (1993), ``dopri5.f``."""


class DiagonallyImplicitTableau(NamedTuple):
    """A stiffly accurate singly diagonally implicit pair with an explicit first stage (ESDIRK).

    Stage ``i`` solves ``Y_i = y + h sum_{j<i} a_ij f(Y_j) + h gamma f(Y_i)``; the
    last row of ``a`` equals the weights, so the step's result is the last stage.

    Attributes
    ----------
    c : ndarray, shape (s,)
        Nodes (``c[0] = 0``, ``c[-1] = 1``).
    a : ndarray, shape (s, s)
        Stage coefficients, lower triangular with ``gamma`` on the diagonal after
        the first (explicit) row.
    e : ndarray, shape (s,)
        Weights of the propagated minus the embedded solution: ``h sum_j e_j f(Y_j)``
        estimates the local error.
    gamma : float
        The diagonal coefficient.
    order, embedded_order : int
        Orders of the propagated and the embedded solutions (the controller uses
        ``1 / (embedded_order + 1)``).
    """

    c: np.ndarray
    a: np.ndarray
    e: np.ndarray
    gamma: float
    order: int
    embedded_order: int


_GAMMA = 1767732205903 / 4055673282236
_B = [
    1471266399579 / 7840856788654,
    -4482444167858 / 7529755066697,
    11266239266428 / 11593286722821,
    _GAMMA,
]
_B_EMBEDDED = [
    2756255671327 / 12835298489170,
    -10771552573575 / 22201958757719,
    9247589265047 / 10645013368117,
    2193209047091 / 5459859503100,
]

ESDIRK3 = DiagonallyImplicitTableau(
    c=np.array([0.0, 2 * _GAMMA, 3 / 5, 1.0]),
    a=_lower(
        [
            [0.0],
            [_GAMMA, _GAMMA],
            [2746238789719 / 10658868560708, -640167445237 / 6845629431997, _GAMMA],
            _B,
        ]
    ),
    e=np.array(_B) - np.array(_B_EMBEDDED),
    gamma=_GAMMA,
    order=3,
    embedded_order=2,
)
"""ESDIRK3(2)4L[2]SA, the implicit part of ARK3(2)4L[2]SA: L-stable, stiffly accurate, stage order 2.

Kennedy CA, Carpenter MH (2003). Additive Runge-Kutta schemes for convection-diffusion-reaction
equations. Appl Numer Math 44:139-181, Table 2 (the same coefficients as SUNDIALS ARKode's
``ARK324L2SA_DIRK_4_2_3`` and PETSc's ``TSARKIMEX3``)."""
