"""Expression trees of checked spec expressions, and the simplifying constructors on them.

A node is a tuple: ``("num", value)`` | ``("sym", name)`` | ``(op, a, b)`` for
``op`` in ``+ - * / **`` | ``("neg", a)`` | ``("call", fname, a[, b])`` |
``("if_le", a, b, then, else)`` (the derivatives of ``min``/``max``).  Tuples
hash by content, so a tree is its own cache key.
"""

from __future__ import annotations

__all__ = ["Node", "ZERO", "ONE", "num", "is_num", "add", "sub", "mul", "div", "neg"]

Node = tuple

ZERO: Node = ("num", 0.0)
ONE: Node = ("num", 1.0)


def num(value: float) -> Node:
    """A constant."""
    return ("num", float(value))


def is_num(n: Node, v: float | None = None) -> bool:
    """Whether ``n`` is a constant (equal to ``v`` when given)."""
    return n[0] == "num" and (v is None or n[1] == v)


def add(a: Node, b: Node) -> Node:
    """``a + b``, dropping zeros."""
    if is_num(a, 0.0):
        return b
    if is_num(b, 0.0):
        return a
    return ("+", a, b)


def sub(a: Node, b: Node) -> Node:
    """``a - b``, dropping zeros."""
    if is_num(b, 0.0):
        return a
    if is_num(a, 0.0):
        return neg(b)
    return ("-", a, b)


def mul(a: Node, b: Node) -> Node:
    """``a * b``, folding zeros and ones."""
    if is_num(a, 0.0) or is_num(b, 0.0):
        return ZERO
    if is_num(a, 1.0):
        return b
    if is_num(b, 1.0):
        return a
    return ("*", a, b)


def div(a: Node, b: Node) -> Node:
    """``a / b`` (0 when ``a`` is 0)."""
    return ZERO if is_num(a, 0.0) else ("/", a, b)


def neg(a: Node) -> Node:
    """``-a``, folded into constants."""
    if is_num(a):
        return ("num", -a[1])
    return ("neg", a)
