"""Compiling a study's later twins in a second process while this one compiles and fits.

On a machine whose compile caches are empty, compiling a twin's log density (PyTensor's graph
rewriting, then Numba's LLVM) takes 5-10 s per closed-form twin and runs on one core, while the
other core waits: the largest stage of a cold study (``benchmarks/bench_study.py``).
:class:`CompileAhead` starts one worker process that compiles twins from the last one down,
each exactly as :func:`twinbayes.fit` would (``fitting.compiled_for``), which leaves their
rewritten graphs and machine code in the on-disk caches.  The study process fits twins from
the first one up; it compiles a twin itself unless the worker has claimed it, and otherwise
waits for the worker and finds the twin in the caches (0.4-1 s instead of 5-10 s).  Each twin
is claimed once, by whichever process reaches it first (an exclusively created file), so the
two processes compile different twins side by side until they meet.

Only twins this machine has not compiled before are sent (``graph_cache.remembered``, a
hint); on a warm machine no worker starts.  Nothing the study computes depends on the worker:
the caches hold what this process would have produced itself (bit-identical results, tested),
and a worker that fails, is slow or compiled into another compile directory only costs the time
it would have saved.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..inputs.patient import Patient

__all__ = ["CompileAhead"]

log = logging.getLogger(__name__)


def _compile_one(source: str, patient: Patient) -> None:
    """Compile the weighted model of the spec at ``source`` for ``patient`` as :func:`fit` does."""
    from ..dynamics.design import design_for
    from ..fitting.twin import compiled_for
    from ..model.twin_model import TwinModel
    from ..spec.model_spec import load_spec

    spec = load_spec(source)
    design = design_for(spec, patient)
    compiled_for(spec, design, TwinModel.of(spec).pymc_model(design, weighted=True))


def _needed(sources: list[str], patient: Patient) -> list[tuple[int, str]]:
    """Twins ``2..n`` (1-based index, source) not yet compiled into this machine's caches."""
    from ..dynamics.design import design_for
    from ..fitting.compile.graph_cache import remembered
    from ..fitting.twin import compile_label
    from ..spec.model_spec import load_spec

    jobs = []
    for i, source in enumerate(sources[1:], 2):
        spec = load_spec(source)
        if not remembered(compile_label(spec, design_for(spec, patient))):
            jobs.append((i, str(source)))
    return jobs


def _claim(folder: str | Path, i: int) -> bool:
    """Claim twin ``i`` for compiling: True for the first process to ask, False afterwards.

    False too once the study has removed ``folder`` (it no longer needs the worker).
    """
    try:
        os.close(os.open(Path(folder) / f"twin-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except (FileExistsError, FileNotFoundError):
        return False
    return True


def _worker() -> None:
    """``python -m twinbayes.run.compile_ahead``: read the job from stdin; from the last twin down,
    compile each twin it can claim and say ``done i``."""
    from pytensor import config

    from ..fitting.compile.import_speed import import_and_freeze

    import_and_freeze(("twinbayes.fitting.twin", "nutpie"))

    compiledir, claims, patient, jobs = pickle.load(sys.stdin.buffer)
    for i, source in reversed(jobs):
        if not _claim(claims, i):  # the study process compiles it (or no longer needs it)
            continue
        if str(config.compiledir) == compiledir:  # another cache than the study's: no use
            try:
                _compile_one(source, patient)
            except Exception as err:  # the study process compiles it and reports any error
                print(f"failed {i} {type(err).__name__}", flush=True)
        print(f"done {i}", flush=True)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CompileAhead:
    """A worker compiling twins ``n, n-1, ...`` of a study while this process fits twins ``1, 2, ...``
    (module docstring).

    Parameters
    ----------
    sources : list of str
        The study's spec files (``Study.specs``), in fitting order.
    patient : Patient
        The patient the twins are fitted to.
    enabled : bool
        Start the worker at all (only worth it with nutpie, two or more twins and two or
        more cores; otherwise :meth:`wait` returns at once).
    """

    def __init__(self, sources: list[str], patient: Patient, enabled: bool = True):
        self._pending: set[int] = set()
        self._proc: subprocess.Popen | None = None
        self._claims: str | None = None
        if not enabled or len(sources) < 2 or _cores() < 2:
            return
        from pytensor import config

        flags = os.environ.get("PYTENSOR_FLAGS", "")
        env = {
            **os.environ,
            "PYTENSOR_FLAGS": f"{flags},base_compiledir={config.base_compiledir}".lstrip(","),
        }
        try:  # a fresh interpreter, not multiprocessing: the caller's __main__ is never re-run
            jobs = _needed(sources, patient)
            if not jobs:  # a warm machine: the worker would only compete for the cores
                return
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "twinbayes.run.compile_ahead"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            self._claims = tempfile.mkdtemp(prefix="twinbayes-compile-ahead-")
            pickle.dump((str(config.compiledir), self._claims, patient, jobs), self._proc.stdin)
            self._proc.stdin.close()
            self._pending = {i for i, _ in jobs}
        except Exception as err:  # no worker: each twin compiles in this process
            log.debug("compile-ahead worker not started: %s", err)
            self.close()

    def wait(self, i: int) -> None:
        """Return when twin ``i`` (1-based) is this process's to compile (the worker has not
        claimed it), or when the worker is done with it, however it went."""
        if i in self._pending and _claim(self._claims, i):
            self._pending.discard(i)
        while i in self._pending and self._proc is not None:
            line = self._proc.stdout.readline().decode()
            if not line:  # the worker ended early: the rest compile here
                self._pending.clear()
            elif line.startswith("done "):
                self._pending.discard(int(line.split()[1]))
            else:
                log.debug("compile-ahead: %s", line.strip())

    def close(self) -> None:
        """Stop the worker (twins not yet compiled ahead are compiled by the study process)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
            self._proc = None
        if self._claims is not None:
            shutil.rmtree(self._claims, ignore_errors=True)
            self._claims = None
        self._pending.clear()

    def __enter__(self) -> CompileAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    _worker()
