"""The safe expression compiler.

Spec files come from other teams and are *data*: an expression such as
``"ka * depot - ke * central"`` is parsed with :func:`ast.parse` (which never
executes anything) and then checked node by node against a whitelist:
numbers, named symbols, ``+ - * / **``, unary minus and calls of a fixed set
of math functions.  Anything else -- attribute access, subscripts, lambdas,
comprehensions, keyword arguments, strings, unknown names or functions -- is
rejected with an :class:`ExpressionError` that names the offending token.

The checked tree is turned into a small closure tree that can be evaluated
with any array backend (NumPy for simulation, PyTensor for inference).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..error import TwinbayesError
from .functions import FUNCTIONS

__all__ = ["ExpressionError", "Expression", "compile_expression", "FUNCTIONS", "NUMPY", "PYTENSOR"]


class ExpressionError(TwinbayesError, ValueError):
    """An expression is not allowed or cannot be parsed."""


MAX_LENGTH = 4000
"""Longest expression accepted (characters); guards the parser against abuse."""
MAX_DEPTH = 32
"""Deepest nesting of operations and calls accepted (compiling 150 nested calls took minutes)."""
MAX_NODES = 600
"""Most operations, numbers and names in one expression."""


class _Backend:
    """The whitelisted functions (:data:`~twinbayes.spec.functions.FUNCTIONS`) of one array library."""

    def __init__(self, name: str, funcs: Mapping[str, Callable[..., Any]]):
        self.name = name
        self.funcs = dict(funcs)


class _LazyBackend:
    def __init__(self, factory):
        self._factory = factory
        self._backend = None

    def get(self) -> _Backend:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend


def _numpy_backend() -> _Backend:
    return _Backend("numpy", {n: f.numpy for n, f in FUNCTIONS.items()})


def _pytensor_backend() -> _Backend:
    import pytensor.tensor as pt

    return _Backend("pytensor", {n: f.pytensor(pt) for n, f in FUNCTIONS.items()})


NUMPY = _LazyBackend(_numpy_backend)
PYTENSOR = _LazyBackend(_pytensor_backend)

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}

_Node = Callable[[Mapping[str, Any], _Backend], Any]


@dataclass(frozen=True)
class Expression:
    """A checked, compiled expression.

    Attributes
    ----------
    source : str
        The expression text as written in the spec.
    symbols : frozenset of str
        The names the expression reads.
    """

    source: str
    symbols: frozenset[str]
    _fn: _Node = field(repr=False, compare=False)
    _allowed: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __reduce__(self):
        # closures do not pickle; recompile from the text (for multiprocessing and Dask)
        return (compile_expression, (self.source, self._allowed))

    def __call__(self, env: Mapping[str, Any], backend: _LazyBackend = NUMPY) -> Any:
        """Evaluate with values for every symbol in ``env``."""
        missing = self.symbols - set(env)
        if missing:
            raise ExpressionError(f"expression {self.source!r} needs values for {sorted(missing)}")
        return self._fn(env, backend.get())


def _check_constant(fn: _Node, bad: Callable[[str], ExpressionError]) -> None:
    """Refuse a part without symbols whose value is not a finite number (``1e308*10``, ``1/0``)."""
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            value = fn({}, NUMPY.get())
    except (OverflowError, ZeroDivisionError, ValueError) as exc:
        raise bad(f"cannot be evaluated ({exc})") from None
    if not np.all(np.isfinite(value)):
        raise bad("evaluates to a number that is not finite")


def _describe(node: ast.AST, source: str) -> str:
    seg = ast.get_source_segment(source, node)
    return seg if seg is not None else type(node).__name__


def _check_size(node: ast.AST, where: str, text: str) -> None:
    """Refuse expressions nested deeper than :data:`MAX_DEPTH` or larger than :data:`MAX_NODES`."""
    count, stack = 0, [(node, 1)]
    while stack:
        n, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            why = (
                f"nested deeper than {MAX_DEPTH} levels"
                if depth > MAX_DEPTH
                else f"more than {MAX_NODES} terms"
            )
            raise ExpressionError(
                f"{where}: expression {why}; split it into derived quantities: {text[:60]!r}..."
            )
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(n))


def compile_expression(
    source: str, allowed_symbols: set[str] | frozenset[str], where: str = "expression"
) -> Expression:
    """Check ``source`` against the whitelist and compile it.

    Parameters
    ----------
    source : str
        The expression text.
    allowed_symbols : set of str
        Names the expression may read (parameters, states, ...).
    where : str
        Location used in error messages, e.g. ``"pk.toml: dynamics.rhs.central"``.

    Raises
    ------
    ExpressionError
        With ``where`` and the offending token.
    """
    if not isinstance(source, (str, int, float)) or isinstance(source, bool):
        raise ExpressionError(
            f"{where}: expected an expression string, got {type(source).__name__}"
        )
    source = str(source)
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"{where}: expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{where}: cannot parse {source!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(
            f"{where}: cannot parse the expression ({type(exc).__name__}); simplify it"
        ) from None
    text = source.strip()
    _check_size(tree.body, where, text)
    symbols: set[str] = set()

    def bad(node: ast.AST, why: str) -> ExpressionError:
        return ExpressionError(f"{where}: {why}: {_describe(node, text)!r} in {text!r}")

    def build(node: ast.AST) -> _Node:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise bad(node, "only numbers are allowed as constants")
            try:
                value = float(node.value)
            except OverflowError:
                raise bad(node, "constant too large for a float (at most about 1.8e308)") from None
            if not math.isfinite(value):
                raise bad(node, "non-finite constant")
            return lambda env, be: value
        if isinstance(node, ast.Name):
            name = node.id
            if name not in allowed_symbols:
                raise bad(
                    node, f"unknown symbol (known here: {', '.join(sorted(allowed_symbols))})"
                )
            symbols.add(name)
            return lambda env, be: env[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op = _BINOPS[type(node.op)]
            left, right = checked(node.left), checked(node.right)
            return lambda env, be: op(left(env, be), right(env, be))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            op = _UNARY[type(node.op)]
            operand = checked(node.operand)
            return lambda env, be: op(operand(env, be))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                build(node.func)  # raises the specific reason (attribute, lambda, ...)
                raise bad(node.func, "only plain function names may be called")
            fname = node.func.id
            if fname not in FUNCTIONS:
                raise bad(node.func, f"unknown function (allowed: {', '.join(sorted(FUNCTIONS))})")
            if node.keywords:
                raise bad(node, "keyword arguments are not allowed")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise bad(node, "starred arguments are not allowed")
            if len(node.args) != FUNCTIONS[fname].arity:
                raise bad(node, f"{fname} takes {FUNCTIONS[fname].arity} argument(s)")
            args = [checked(a) for a in node.args]
            return lambda env, be: be.funcs[fname](*(a(env, be) for a in args))
        kinds = {
            ast.Attribute: "attribute access is not allowed",
            ast.Subscript: "subscripts are not allowed",
            ast.Lambda: "lambda is not allowed",
        }
        raise bad(node, kinds.get(type(node), f"{type(node).__name__} is not allowed"))

    def checked(node: ast.AST) -> _Node:
        fn = build(node)
        if not isinstance(node, ast.Constant) and not any(
            isinstance(n, ast.Name) for n in ast.walk(node)
        ):
            _check_constant(fn, lambda why: bad(node, why))
        return fn

    fn = checked(tree.body)
    return Expression(text, frozenset(symbols), fn, frozenset(allowed_symbols))
