"""Symbolic derivatives and code generation for checked spec expressions.

The ODE engine (:mod:`twinbayes.dynamics.ode`) needs the right-hand sides
``f(t, y, p, u)`` and their Jacobians ``df/dy`` and ``df/dp`` as fast
compiled functions.  This module differentiates the expressions of a spec
symbolically (chain rule over the whitelist of :mod:`twinbayes.spec.expr`)
and writes them out as Python source for Numba.

Nothing from a spec file reaches that source verbatim: expressions are
parsed again from their *checked* text, every node must be one the
whitelist allows (else :class:`~twinbayes.spec.expr.ExpressionError`),
numbers are re-printed with ``repr(float)`` and symbols are replaced by
array slots (``y[0]``, ``p[3]``, ``u[1]``) or ``t``.  The generated code
therefore contains only arithmetic, those slots and a fixed set of math
functions.
"""

from __future__ import annotations

import ast
import math
from typing import Mapping

from .expr import FUNCTIONS, Expression, ExpressionError

__all__ = ["Node", "parse", "derivative", "to_source", "to_statements"]

# A node is a tuple: ("num", value) | ("sym", name) | (op, a, b) for op in + - * / ** |
# ("neg", a) | ("call", fname, a[, b]) | ("if_le", a, b, then, else)  (derivatives of min/max)
Node = tuple

ZERO = ("num", 0.0)
ONE = ("num", 1.0)
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def parse(expr: Expression) -> Node:
    """The expression tree of a checked :class:`Expression`."""

    def walk(node: ast.AST) -> Node:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ("num", float(node.value))
        if isinstance(node, ast.Name):
            return ("sym", node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return (_OPS[type(node.op)], walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return ("neg", walk(node.operand))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return walk(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
            return ("call", node.func.id, *(walk(a) for a in node.args))
        raise ExpressionError(f"{expr.source!r}: unexpected {type(node).__name__}")  # pragma: no cover - checked before

    return walk(ast.parse(expr.source, mode="eval").body)


def _is_num(n: Node, v: float | None = None) -> bool:
    return n[0] == "num" and (v is None or n[1] == v)


def _add(a, b):
    if _is_num(a, 0.0):
        return b
    if _is_num(b, 0.0):
        return a
    return ("+", a, b)


def _sub(a, b):
    if _is_num(b, 0.0):
        return a
    if _is_num(a, 0.0):
        return _neg(b)
    return ("-", a, b)


def _mul(a, b):
    if _is_num(a, 0.0) or _is_num(b, 0.0):
        return ZERO
    if _is_num(a, 1.0):
        return b
    if _is_num(b, 1.0):
        return a
    return ("*", a, b)


def _div(a, b):
    return ZERO if _is_num(a, 0.0) else ("/", a, b)


def _neg(a):
    if _is_num(a):
        return ("num", -a[1])
    return ("neg", a)


def derivative(node: Node, name: str) -> Node:
    """Symbolic derivative of ``node`` with respect to symbol ``name``.

    ``abs``, ``min``, ``max`` and ``step`` are differentiated piecewise (their
    derivative at the kink is that of one side), as automatic differentiation
    in PyTensor does.
    """
    d = lambda n: derivative(n, name)  # noqa: E731
    kind = node[0]
    if kind == "num":
        return ZERO
    if kind == "sym":
        return ONE if node[1] == name else ZERO
    if kind == "neg":
        return _neg(d(node[1]))
    if kind in "+-":
        return (_add if kind == "+" else _sub)(d(node[1]), d(node[2]))
    if kind == "*":
        a, b = node[1], node[2]
        return _add(_mul(d(a), b), _mul(a, d(b)))
    if kind == "/":
        a, b = node[1], node[2]
        return _sub(_div(d(a), b), _div(_mul(a, d(b)), ("**", b, ("num", 2.0))))
    if kind == "**":
        a, b = node[1], node[2]
        da, db = d(a), d(b)
        if _is_num(db, 0.0):  # power rule
            return _mul(_mul(b, ("**", a, _sub(b, ONE))), da)
        return _mul(node, _add(_mul(db, ("call", "log", a)), _div(_mul(b, da), a)))
    if kind == "call":
        f, args = node[1], node[2:]
        a = args[0]
        da = d(a)
        if f in ("min", "max"):
            b = args[1]
            db = d(b)
            if _is_num(da, 0.0) and _is_num(db, 0.0):
                return ZERO
            first, second = (da, db) if f == "min" else (db, da)
            return ("if_le", a, b, first, second)
        if _is_num(da, 0.0):
            return ZERO
        outer = {
            "exp": lambda: node,
            "log": lambda: _div(ONE, a),
            "log1p": lambda: _div(ONE, _add(ONE, a)),
            "expm1": lambda: ("call", "exp", a),
            "sqrt": lambda: _div(("num", 0.5), node),
            "abs": lambda: ("call", "sign", a),
            "sin": lambda: ("call", "cos", a),
            "cos": lambda: _neg(("call", "sin", a)),
            "tanh": lambda: _sub(ONE, ("**", node, ("num", 2.0))),
            "sigmoid": lambda: _mul(node, _sub(ONE, node)),
            "step": lambda: ZERO,
        }[f]()
        return _mul(outer, da)
    raise AssertionError(kind)  # pragma: no cover


_FUNC_SOURCE = {
    "exp": "math.exp",
    "log": "math.log",
    "log1p": "math.log1p",
    "expm1": "math.expm1",
    "sqrt": "math.sqrt",
    "abs": "abs",
    "sin": "math.sin",
    "cos": "math.cos",
    "tanh": "math.tanh",
    "sigmoid": "_sigmoid",
    "min": "min",
    "max": "max",
    "step": "_step",
    "sign": "_sign",
}


def to_source(node: Node, slots: Mapping[str, str]) -> str:
    """Python source of ``node`` with each symbol replaced by ``slots[name]``.

    ``slots`` values are generated by the caller (``"y[0]"``, ``"t"``, ...);
    a symbol without a slot raises ``KeyError`` (a programming error).
    """
    return _render(node, lambda child: to_source(child, slots), slots)


def _render(node: Node, sub, slots: Mapping[str, str]) -> str:
    """Source of one node, its children rendered by ``sub``."""
    kind = node[0]
    if kind == "num":
        if not math.isfinite(node[1]):  # pragma: no cover - rejected by the whitelist
            raise ExpressionError("non-finite constant")
        return repr(float(node[1]))
    if kind == "sym":
        return slots[node[1]]
    parts = [sub(c) if isinstance(c, tuple) else c for c in node[1:]]
    if kind == "neg":
        return f"(-{parts[0]})"
    if kind == "**" and _is_num(node[2], 2.0):
        return f"({parts[0]} * {parts[0]})"
    if kind in ("+", "-", "*", "/", "**"):
        return f"({parts[0]} {kind} {parts[1]})"
    if kind == "call":
        return f"{_FUNC_SOURCE[parts[0]]}({', '.join(parts[1:])})"
    if kind == "if_le":
        return f"({parts[2]} if {parts[0]} <= {parts[1]} else {parts[3]})"
    raise AssertionError(kind)  # pragma: no cover


def to_statements(assignments: list[tuple[str, Node]], slots: Mapping[str, str], indent: str = "    ") -> list[str]:
    """Source lines ``target = expression`` with common subexpressions computed once.

    Every compound subtree that occurs more than once across ``assignments``
    (e.g. ``log(V / V0)`` in a right-hand side and its Jacobian) becomes a
    temporary ``_cK`` assigned before its first use.
    """
    counts: dict[Node, int] = {}

    def count(node: Node) -> None:
        if node[0] in ("num", "sym"):
            return
        counts[node] = counts.get(node, 0) + 1
        if counts[node] == 1:  # children of a repeated subtree are counted once
            for child in node[1:]:
                if isinstance(child, tuple):
                    count(child)

    for _, node in assignments:
        count(node)
    names: dict[Node, str] = {}
    lines: list[str] = []

    def emit(node: Node) -> str:
        if node in names:
            return names[node]
        text = _render(node, emit, slots)
        if node[0] in ("num", "sym") or counts.get(node, 0) < 2:
            return text
        names[node] = f"_c{len(names)}"
        lines.append(f"{indent}{names[node]} = {text}")
        return names[node]

    for target, node in assignments:
        lines.append(f"{indent}{target} = {emit(node)}")
    return lines


def helpers() -> dict:
    """Namespace of the functions that generated source may call."""
    return {
        "math": math,
        "_sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)),
        "_step": lambda x: 1.0 if x > 0 else 0.0,
        "_sign": lambda x: 1.0 if x > 0 else (-1.0 if x < 0 else 0.0),
    }
