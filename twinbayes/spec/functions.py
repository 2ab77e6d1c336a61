"""The function whitelist of the expression language: one table, every backend.

Each :class:`Function` row holds everything twinbayes needs to know about a
function a spec may call: its arity, its NumPy and PyTensor implementations,
the source the Numba code generator writes for it (with a helper where
``math`` has none) and its derivative rule for the symbolic Jacobians.  The
parser (:mod:`twinbayes.spec.expr`), the evaluators and the code generator
(:mod:`twinbayes.spec.symbolic`) all read this table, so adding a function
is adding a row.

``abs``, ``min``, ``max`` and ``step`` are differentiated piecewise (the
derivative at the kink is that of one side), as automatic differentiation in
PyTensor does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .nodes import ONE, ZERO, Node, add, div, is_num, mul, neg, num, sub

__all__ = ["Function", "TABLE", "FUNCTIONS", "numba_helpers"]

Rule = Callable[[Node, tuple[Node, ...], tuple[Node, ...]], Node]
"""``rule(node, args, dargs)``: the derivative of ``node = f(*args)`` given the derivatives of its arguments."""


def _chain(outer: Callable[[Node, Node], Node]) -> Rule:
    """The chain rule for a one-argument function whose derivative is ``outer(node, a)``."""

    def rule(node: Node, args: tuple[Node, ...], dargs: tuple[Node, ...]) -> Node:
        return ZERO if is_num(dargs[0], 0.0) else mul(outer(node, args[0]), dargs[0])

    return rule


def _min_max(first_wins_on_le: bool) -> Rule:
    """``min``/``max``: the derivative of the argument that is selected (``a <= b`` decides)."""

    def rule(node: Node, args: tuple[Node, ...], dargs: tuple[Node, ...]) -> Node:
        da, db = dargs
        if is_num(da, 0.0) and is_num(db, 0.0):
            return ZERO
        first, second = (da, db) if first_wins_on_le else (db, da)
        return ("if_le", args[0], args[1], first, second)

    return rule


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _step(x: float) -> float:
    return 1.0 if x > 0 else 0.0


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@dataclass(frozen=True)
class Function:
    """One whitelisted function.

    Attributes
    ----------
    name : str
        The name spec expressions call.
    arity : int
        Number of arguments.
    numpy : callable
        NumPy implementation (element-wise).
    pytensor : callable
        ``pytensor(pt) -> implementation``, given ``pytensor.tensor`` (imported lazily).
    source : str
        What generated Numba source calls: ``math.*``, a builtin, or a helper in :func:`numba_helpers`.
    derivative : callable
        The :data:`Rule` for symbolic differentiation.
    helper : callable, optional
        Scalar Python implementation behind ``source`` when ``math`` has none (compiled by Numba).
    public : bool
        Whether spec expressions may call it (``sign`` only appears in derivatives).
    """

    name: str
    arity: int
    numpy: Callable[..., Any]
    pytensor: Callable[[Any], Callable[..., Any]]
    source: str
    derivative: Rule
    helper: Callable[..., float] | None = None
    public: bool = True


_ROWS = (
    Function("exp", 1, np.exp, lambda pt: pt.exp, "math.exp", _chain(lambda node, a: node)),
    Function("log", 1, np.log, lambda pt: pt.log, "math.log", _chain(lambda node, a: div(ONE, a))),
    Function(
        "log1p",
        1,
        np.log1p,
        lambda pt: pt.log1p,
        "math.log1p",
        _chain(lambda node, a: div(ONE, add(ONE, a))),
    ),
    Function(
        "expm1",
        1,
        np.expm1,
        lambda pt: pt.expm1,
        "math.expm1",
        _chain(lambda node, a: ("call", "exp", a)),
    ),
    Function(
        "sqrt",
        1,
        np.sqrt,
        lambda pt: pt.sqrt,
        "math.sqrt",
        _chain(lambda node, a: div(num(0.5), node)),
    ),
    Function(
        "abs", 1, np.abs, lambda pt: pt.abs, "abs", _chain(lambda node, a: ("call", "sign", a))
    ),
    Function(
        "sin", 1, np.sin, lambda pt: pt.sin, "math.sin", _chain(lambda node, a: ("call", "cos", a))
    ),
    Function(
        "cos",
        1,
        np.cos,
        lambda pt: pt.cos,
        "math.cos",
        _chain(lambda node, a: neg(("call", "sin", a))),
    ),
    Function(
        "tanh",
        1,
        np.tanh,
        lambda pt: pt.tanh,
        "math.tanh",
        _chain(lambda node, a: sub(ONE, ("**", node, num(2.0)))),
    ),
    Function(
        "sigmoid",
        1,
        lambda x: 1.0 / (1.0 + np.exp(-x)),
        lambda pt: pt.sigmoid,
        "_sigmoid",
        _chain(lambda node, a: mul(node, sub(ONE, node))),
        helper=_sigmoid,
    ),
    Function("min", 2, np.minimum, lambda pt: pt.minimum, "min", _min_max(True)),
    Function("max", 2, np.maximum, lambda pt: pt.maximum, "max", _min_max(False)),
    Function(
        "step",
        1,
        lambda x: np.where(np.asarray(x) > 0, 1.0, 0.0),
        lambda pt: lambda x: pt.switch(pt.gt(x, 0), 1.0, 0.0),
        "_step",
        _chain(lambda node, a: ZERO),
        helper=_step,
    ),
    Function(
        "sign",
        1,
        np.sign,
        lambda pt: pt.sign,
        "_sign",
        _chain(lambda node, a: ZERO),
        helper=_sign,
        public=False,
    ),
)

TABLE: dict[str, Function] = {f.name: f for f in _ROWS}
"""Every function, including those that only appear in derivatives."""

FUNCTIONS: dict[str, Function] = {f.name: f for f in _ROWS if f.public}
"""The functions spec expressions may call."""


def numba_helpers() -> dict[str, Any]:
    """Namespace for generated source: ``math`` and the helpers named in the table's ``source``."""
    return {"math": math, **{f.source: f.helper for f in _ROWS if f.helper is not None}}
