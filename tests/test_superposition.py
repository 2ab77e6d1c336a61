"""Superposition of doses over posterior draws: the dose-by-dose evaluation (used for scenarios
and predictive draws) gives the same bits as the ``times x doses x draws`` array it replaced,
with lag times, bioavailability, infusions and the matrix exponential, and agrees with the
sum of single-dose responses computed one draw at a time."""

import re

import numpy as np
import pytest

import twinbayes as tb
from twinbayes.dynamics import linear
from twinbayes.run.validation import prior_draw
from twinbayes.spec.expr import NUMPY


def _variants():
    lag = tb.load_spec("pk_1cmt_oral_lag")
    with_f = lag.text.replace('lag = "tlag"', 'lag = "tlag"\nbioavailability = "0.8"')
    iv = tb.load_spec("pk_2cmt_iv").text
    expm = re.sub(r"(?m)^(solution|infusion)\.\w+ = .*$", "", iv)  # no closed form: e^{A t}
    return {
        "lag": lag,
        "lag+F": tb.load_spec("f.toml", text=with_f),
        "2cmt oral": tb.load_spec("pk_2cmt_oral"),
        "2cmt iv": tb.load_spec("pk_2cmt_iv"),
        "2cmt iv expm": tb.load_spec("e.toml", text=expm),
    }


def _draws(spec, n, seed):
    rng = np.random.default_rng(seed)
    draws = [prior_draw(spec, rng) for _ in range(n)]
    env = {k: np.array([d[k] for d in draws]) for k in draws[0]}
    return spec.evaluate_derived({**spec.fixed_values(), **env}, NUMPY)


@pytest.mark.parametrize("name", list(_variants()))
def test_dose_by_dose_superposition_is_bitwise_the_dense_sum(name):
    spec = _variants()[name]
    route = next(iter(spec.routes))
    times = np.concatenate([[0.0, 0.1], np.linspace(0.5, 40, 80), [7.0, 3.0]])  # unsorted too
    t_dose = np.array([0.0, 6.5, 12.0, 12.0, 30.0])
    scale = np.array([100.0, 50.0, 25.0, 80.0, 60.0])
    env = _draws(spec, 64, 1)
    states = list(spec.states)
    for step in (False, True):
        dense = linear._superpose_dense(
            spec, spec.routes[route], env, times, t_dose, scale, states, NUMPY, True, step
        )
        by_dose = linear._superpose_by_dose(
            spec, spec.routes[route], env, times, t_dose, scale, states, step
        )
        for s in states:
            assert by_dose[s].shape == (len(times), 64)
            np.testing.assert_array_equal(by_dose[s], dense[s], err_msg=f"{name} {s} step={step}")


def test_draws_at_once_equal_one_draw_at_a_time():
    spec = _variants()["lag+F"]
    env = _draws(spec, 16, 2)
    times = np.linspace(0, 30, 61)
    doses = {"oral": (np.array([0.0, 8.0, 16.0]), np.array([300.0, 300.0, 150.0]))}
    batch = linear.state_amounts(spec, env, times, doses, ["central"])["central"]
    for j in range(16):
        one = linear.state_amounts(spec, {k: v[j] for k, v in env.items()}, times, doses)
        np.testing.assert_allclose(batch[:, j], one["central"], rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("name", ["lag+F", "2cmt iv expm"])
def test_chunks_of_draws_give_the_same_bits(name, monkeypatch):
    """The evaluation in chunks of draws (kinds.in_draw_chunks) is bitwise the evaluation at once."""
    from twinbayes.dynamics import kinds

    spec = _variants()[name]
    route = next(iter(spec.routes))
    env = _draws(spec, 500, 3)
    times = np.linspace(0, 48, 193)
    doses = {route: (np.arange(0.0, 48.0, 6.0), np.full(8, 100.0))}
    dynamics = kinds.LinearExact(spec)
    states = list(spec.states)
    monkeypatch.setattr(kinds, "CHUNK_ELEMENTS", 10_000)  # 25 draws a chunk
    chunked = dynamics.states_at(env, times, doses, states)
    monkeypatch.setattr(kinds, "CHUNK_ELEMENTS", 1 << 40)  # all at once
    whole = dynamics.states_at(env, times, doses, states)
    for s in states:
        assert chunked[s].shape == (len(times), 500)
        np.testing.assert_array_equal(chunked[s], whole[s])
