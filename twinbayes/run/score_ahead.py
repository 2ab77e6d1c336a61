"""Scoring (and simulating) each fitted twin while the study fits the next one.

A twin's out-of-sample score (PSIS-LOO and its exact refits, or LFO) depends on that twin
alone, and its refits are NUTS runs in nutpie's own threads.  :class:`ScoreAhead` scores each
twin in one background thread as soon as it is fitted, while the study builds and fits the
next twin (mostly single-threaded Python) and then simulates the scenarios: on the bundled
example the lag twin's refits, about a quarter of the run's processor time, then overlap work
that kept one of two cores idle.  The scores are what :func:`~twinbayes.comparison.compare`
would compute itself, bit for bit (each refit has its own seed; ``compare`` checks that the
scores were made with its settings).  :class:`Ahead` does the same for any work on one twin,
such as its scenarios (:func:`~twinbayes.decisions.twin_disagreement.simulate_twin`: NumPy, which
releases the GIL, in the gaps the fits leave between their sampling).

Python's warning filters are process-wide and ``warnings.catch_warnings`` is not thread-safe:
libraries that silence a warning for a moment in one thread (ArviZ-stats' autocovariance,
twinbayes' own PSIS and sensitivity code) can leave a filter set or removed when another
thread does the same at once.  The filters are therefore restored, on leaving, to what they
were on entering.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import xarray as xr

from ..comparison.scoring import Scoring
from ..fitting.twin import Twin

__all__ = ["Ahead", "ScoreAhead"]


class Ahead:
    """A background thread computing ``work(twin)`` for each twin submitted (``None``: nothing).

    Use as a context manager.  Leaving it normally waits for the thread; leaving it by an
    error or an interrupt cancels the work not yet started and does not wait for a running
    one (the thread is a daemon: an interrupted ``twinbayes run`` exits at once).  Either way
    the warning filters are restored (after an interrupt, work still running can change
    them once more as it ends).
    """

    def __init__(self, work: Callable[[Twin], Any] | None, name: str = "twinbayes-ahead") -> None:
        self.work = work
        self._name = name
        self._futures: dict[str, Future] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._filters = warnings.catch_warnings()

    def __enter__(self) -> Ahead:
        self._filters.__enter__()
        if self.work is not None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind, *exc) -> None:
        try:
            if self._thread is not None:
                if kind is not None:
                    for future in self._futures.values():
                        future.cancel()  # those not started
                self._queue.put(None)
                if kind is None:
                    self._thread.join()
        finally:
            self._filters.__exit__(kind, *exc)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            future, twin = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self.work(twin))
                except BaseException as exc:  # raised in the study's thread by scores()
                    future.set_exception(exc)

    def submit(self, twin: Twin) -> None:
        """Start the work on ``twin`` (after the twins submitted before it)."""
        if self._thread is not None:
            self._futures[twin.name] = Future()
            self._queue.put((self._futures[twin.name], twin))

    def results(self, twins: list[Twin]) -> list | None:
        """The results for ``twins`` in their order, waiting for them (``None`` unless every one
        was submitted); work that failed raises its error here."""
        if self._thread is None or any(t.name not in self._futures for t in twins):
            return None
        return [self._futures[t.name].result() for t in twins]


class ScoreAhead(Ahead):
    """A background thread scoring twins with ``scoring`` (``None``: nothing is scored); see
    :class:`Ahead`."""

    def __init__(self, scoring: Scoring | None) -> None:
        super().__init__(scoring, name="twinbayes-score")
        self.scoring = scoring

    def scores(self, twins: list[Twin]) -> list[xr.Dataset] | None:
        """The scores of ``twins`` in their order, waiting for them (``None`` when not scored);
        a scoring that failed raises its error here."""
        return self.results(twins)
