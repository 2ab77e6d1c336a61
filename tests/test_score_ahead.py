"""Scoring twins in a background thread while the study fits the next one (twinbayes.run.score_ahead)."""

import threading
import time
import warnings
from typing import NamedTuple

import pytest
import xarray as xr

from twinbayes.run.score_ahead import ScoreAhead


class FakeTwin(NamedTuple):
    name: str


def test_the_warning_filters_are_restored_whatever_the_thread_left():
    """A filter set and never removed in the scoring thread (the race ``catch_warnings`` has
    between threads) does not outlive the block."""
    before = list(warnings.filters)

    def leaky(twin):
        warnings.simplefilter("ignore")  # as an interleaved catch_warnings can leave it
        return xr.Dataset(attrs={"twin": twin.name})

    with ScoreAhead(leaky) as ahead:
        ahead.submit(FakeTwin("a"))
        assert ahead.scores([FakeTwin("a")])[0].attrs["twin"] == "a"
        assert warnings.filters[0][0] == "ignore"  # leaked while the block runs ...
    assert list(warnings.filters) == before  # ... and restored


def test_scores_come_in_the_order_asked_and_a_failure_is_raised_by_scores():
    def score(twin):
        if twin.name == "bad":
            raise ValueError("no twin passed its convergence gate")
        return xr.Dataset(attrs={"twin": twin.name})

    twins = [FakeTwin("b"), FakeTwin("a")]
    with ScoreAhead(score) as ahead:
        for t in twins:
            ahead.submit(t)
        assert [s.attrs["twin"] for s in ahead.scores(twins[::-1])] == ["a", "b"]
        assert ahead.scores([FakeTwin("never submitted")]) is None
        ahead.submit(FakeTwin("bad"))
        with pytest.raises(ValueError, match="convergence gate"):
            ahead.scores([FakeTwin("bad")])
    with ScoreAhead(None) as ahead:  # no comparison: nothing is scored
        ahead.submit(twins[0])
        assert ahead.scores(twins[:1]) is None


def test_an_interrupted_block_cancels_what_waits_and_does_not_wait_for_what_runs():
    release, started, scored = threading.Event(), threading.Event(), []

    def slow(twin):
        started.set()
        release.wait(30)
        scored.append(twin.name)
        return xr.Dataset()

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with ScoreAhead(slow) as ahead:
            ahead.submit(FakeTwin("running"))
            ahead.submit(FakeTwin("waiting"))
            assert started.wait(10)
            raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 5  # not the 30 s the running scoring would take
    release.set()
    ahead._thread.join(10)
    assert scored == ["running"]  # the waiting one was cancelled
