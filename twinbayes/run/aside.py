"""Single-threaded work done in a forked child while this process goes on.

The end of a study run is Python that holds the GIL: the comparison's and the disagreement's
NetCDF files (h5py), the weighted figures (matplotlib) and the report, about 1.3 s on one core
of the bundled example while the other core idles (threads would only take turns).
:class:`Aside` runs a function in a child made by ``fork``, which shares this process's memory
(nothing is pickled), while this process goes on with other work; :meth:`Aside.wait` returns
when the child has finished.  Whatever goes wrong in the child (an error, a crash, a child that
does not finish within ``timeout`` seconds) is never reported from there: the function is then
called in this process, where its error is raised as it would be without a child.

A child is forked only where that is safe: on Linux, and when this process's only Python
thread is the caller (a thread holding a lock at the fork would leave it locked in the child:
in a Jupyter kernel or a test runner with threads the function runs in this process instead).
The function must only write files; what it changes in memory stays in the child.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

__all__ = ["Aside"]


class Aside:
    """Run ``fn`` (no arguments, writes files only) in a forked child; :meth:`wait` for it.

    Parameters
    ----------
    fn : callable
        The work; called again in this process if the child does not finish it.
    timeout : float
        Seconds :meth:`wait` gives the child before stopping it and calling ``fn`` here.

    Examples
    --------
    >>> with Aside(lambda: draw_figures(folder)) as drawing:   # doctest: +SKIP
    ...     write_tables(folder)  # meanwhile, in this process
    ...     drawing.wait()
    """

    def __init__(self, fn: Callable[[], object], timeout: float = 120.0):
        self._fn = fn
        self._timeout = timeout
        self._pid: int | None = None
        if sys.platform != "linux" or threading.active_count() != 1:
            return
        sys.stdout.flush()  # nothing buffered here is written twice (the child never flushes)
        sys.stderr.flush()
        with warnings.catch_warnings():  # Python warns of fork with threads; there are none
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: do the work, say nothing, leave without Python's shutdown
            code = 1
            try:
                warnings.simplefilter("ignore")  # the parent would repeat them on a failure only
                fn()
                code = 0
            finally:
                os._exit(code)
        self._pid = pid

    @property
    def forked(self) -> bool:
        """Whether a child is doing the work (False: :meth:`wait` does it here)."""
        return self._pid is not None

    def wait(self) -> None:
        """Return once the work is done: by the child, else (or if it failed) here."""
        if self._pid is None or not self._reap(self._timeout):
            self._pid = None
            self._fn()

    def _reap(self, timeout: float) -> bool:
        """Wait for the child up to ``timeout`` seconds (then kill it): whether it succeeded."""
        pid, self._pid = self._pid, None
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False
            time.sleep(0.005)

    def __enter__(self) -> Aside:
        return self

    def __exit__(self, kind, *exc) -> None:
        """On an error before :meth:`wait`: stop the child (never left running or unreaped)."""
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None
