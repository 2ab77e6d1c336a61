"""Symbolic derivatives and generated source of spec expressions, against finite differences."""

import math

import numpy as np
import pytest

from twinbayes.spec.expr import FUNCTIONS, compile_expression
from twinbayes.spec.symbolic import derivative, helpers, parse, to_source, to_statements

CASES = [
    "exp(a * x) - log(x) + log1p(x) - expm1(-x)",
    "sqrt(x) * sin(a * x) / cos(x) + tanh(x - a)",
    "sigmoid(a - x) + abs(x - 2 * a) + step(x) * x",
    "min(x, a) * max(x * x, a) + x**a + a**x + x**2 - (-x)**3",
    "-(a + x) / (1 + x * a)**(1 / 3)",
]


def _evaluate(src: str, env: dict) -> float:
    return eval(src, helpers(), env)  # test-only: source generated from a checked expression


def test_cases_use_every_function():
    used = {f for c in CASES for f in FUNCTIONS if f + "(" in c}
    assert used == set(FUNCTIONS)


@pytest.mark.parametrize("source", CASES)
@pytest.mark.parametrize("x", [0.37, 1.9])
def test_derivatives_match_finite_differences(source, x):
    expr = compile_expression(source, {"a", "x"})
    tree = parse(expr)
    env = {"a": 0.8, "x": x}
    slots = {"a": "a", "x": "x"}
    assert _evaluate(to_source(tree, slots), env) == pytest.approx(float(expr(env)), rel=1e-14)
    for var in ("a", "x"):
        d = _evaluate(to_source(derivative(tree, var), slots), env)
        h = 1e-6
        up, down = dict(env), dict(env)
        up[var] += h
        down[var] -= h
        fd = (float(expr(up)) - float(expr(down))) / (2 * h)
        assert d == pytest.approx(fd, rel=1e-6, abs=1e-8), (source, var)


def test_common_subexpressions_are_computed_once():
    tree = parse(compile_expression("(a - b * log(V / V0)) * V", {"a", "b", "V", "V0"}))
    lines = to_statements(
        [("f", tree), ("d", derivative(tree, "V")), ("e", derivative(tree, "b"))],
        {k: k for k in ("a", "b", "V", "V0")},
    )
    assert sum("math.log" in line for line in lines) == 1
    env = {"a": 0.5, "b": 0.1, "V": 30.0, "V0": 2.0}
    exec("\n".join(line.strip() for line in lines), helpers(), env)
    assert env["f"] == pytest.approx((0.5 - 0.1 * math.log(15.0)) * 30.0, rel=1e-14)
    assert env["e"] == pytest.approx(-math.log(15.0) * 30.0, rel=1e-14)


def test_numbers_are_reprinted_not_copied():
    tree = parse(compile_expression("1e-3 * x + 0x10", {"x"}))
    src = to_source(tree, {"x": "y[0]"})
    assert "0x10" not in src and "16.0" in src and "0.001" in src
    assert np.isclose(eval(src, {}, {"y": [2.0]}), 16.002)
