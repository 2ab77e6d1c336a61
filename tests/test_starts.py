"""Chains do not start at hopeless points (compiled_model.guard_starts): a start whose log
density is below the floor is redrawn, a start above it is kept as it was."""

import numpy as np
import pymc as pm

from twinbayes.fitting.compile.compiled_model import START_FLOOR, compile_model, guard_starts


def _steep_model():
    """y ~ Normal(exp(8 theta), 0.01) at y = 1: fine at the support point theta = 0, but a jitter
    of theta by U(-1, 1) puts the mean up to e^8 away, a log density down to about -4e10."""
    with pm.Model() as model:
        theta = pm.Normal("theta", 0.0, 1.0)
        pm.Normal("y", mu=pm.math.exp(8.0 * theta), sigma=0.01, observed=np.array([1.0]))
    return model


def test_hopeless_starts_are_redrawn_and_good_ones_kept():
    compiled = compile_model(_steep_model(), from_records=False)  # with PyTensor's functions
    guarded = guard_starts(compiled)
    logp = compiled.logp_func  # the same density, from PyTensor (the guard calls the machine code)
    redrawn = kept = 0
    for seed in range(40):
        raw, start = compiled.initial_point_func(seed), guarded.initial_point_func(seed)
        assert float(logp(start)[0]) >= START_FLOOR
        if float(logp(raw)[0]) >= START_FLOOR:
            assert np.array_equal(raw, start)  # a good start is not touched: same draws as before
            kept += 1
        else:
            redrawn += 1
    assert redrawn >= 5 and kept >= 5  # both cases were exercised


def test_a_guarded_model_samples_the_same_when_every_start_is_good():
    import nutpie

    with pm.Model() as model:
        pm.Normal("theta", 0.0, 1.0)
    compiled = compile_model(model)
    draws = [
        nutpie.sample(m, draws=50, tune=50, chains=2, seed=3, progress_bar=False)
        .posterior["theta"]
        .values
        for m in (compiled, guard_starts(compiled))
    ]
    assert np.array_equal(*draws)


def test_an_interrupt_during_sampling_stops_the_caller_instead_of_returning_draws_so_far(ctrl_c):
    """nutpie returns the draws so far on Ctrl-C; a study must stop instead (sample_nuts)."""
    import _thread
    import threading
    import time

    import nutpie

    from twinbayes.fitting.compile.compiled_model import sample_nuts

    with pm.Model() as model:  # 200 000 observations: a slow gradient, so a run lasts minutes
        theta = pm.Normal("theta", 0.0, 1.0)
        pm.Normal("y", mu=theta, sigma=1.0, observed=np.zeros(200_000))
    compiled = compile_model(model)
    settings = dict(draws=1_000_000, tune=100, chains=1, seed=1, progress_bar=False)
    for sample, interrupted in [(nutpie.sample, False), (sample_nuts, True)]:
        timer = threading.Timer(1.0, _thread.interrupt_main)  # as Ctrl-C would, mid-run
        timer.start()
        t0 = time.perf_counter()
        try:
            trace = sample(compiled, **settings)
            draws = trace.posterior.sizes["draw"]  # nutpie's own answer: the draws so far
            assert not interrupted and 0 < draws < settings["draws"]
        except KeyboardInterrupt:
            assert interrupted
        finally:
            timer.join()
        assert time.perf_counter() - t0 < 30  # stopped, not run to the end
    quick = dict(draws=20, tune=20, chains=2, seed=3, progress_bar=False)
    assert np.array_equal(  # not interrupted: the draws of nutpie.sample
        sample_nuts(compiled, **quick).posterior["theta"].values,
        nutpie.sample(compiled, **quick).posterior["theta"].values,
    )


def test_all_chains_at_once_gives_the_draws_of_chains_in_waves():
    """sample_nuts runs every chain at once (cores = chains); nutpie with one core runs them one
    after another: each chain's draws depend on the seed and its index only."""
    import nutpie

    from twinbayes.fitting.compile.compiled_model import sample_nuts

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("y", mu=mu, sigma=pm.HalfNormal("s", 1.0), observed=np.array([0.3, -1.2, 2.0]))
    compiled = compile_model(model)
    settings = dict(draws=100, tune=100, chains=4, seed=11, progress_bar=False)
    at_once = sample_nuts(compiled, **settings).posterior
    in_waves = nutpie.sample(compiled, cores=1, **settings).posterior
    for name in ("mu", "s"):
        assert np.array_equal(at_once[name].values, in_waves[name].values)
    assert at_once.sizes["chain"] == 4 and np.unique(at_once["mu"].values[:, -1]).size == 4
