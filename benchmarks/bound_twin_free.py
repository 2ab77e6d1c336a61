"""How much a second process fitting one twin could save at best: the example with that twin free.

A "fit-ahead" worker (a second process fitting and scoring the study's last twin while this one
fits the others, as :mod:`twinbayes.run.compile_ahead` compiles them) was considered for the warm
example.  Its best case is the run in which that twin's fit and its scores cost nothing: this
script fits and scores every twin once (``--setup``, kept in a pickle), then runs the example
with the named twins' fits and scores taken from it, interleaved with plain runs.  The results
are the plain run's bits (the twins are the same; the digests are printed), so what the timings
differ by is the work saved.  A real worker pays its own imports (about 2.5 s of processor time)
and shares the two cores, so it saves less than this bound.

Run::

    .venv/bin/python benchmarks/bound_twin_free.py --setup
    .venv/bin/python benchmarks/bound_twin_free.py [--rounds 2] pk_2cmt_oral pk_1cmt_oral_lag
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PICKLE = Path(tempfile.gettempdir()) / "twinbayes-bound-twin-free.pkl"


def setup() -> None:
    """Fit and score every example twin as ``twinbayes run`` does; keep them in :data:`PICKLE`."""
    from twinbayes.comparison.scoring import Scoring
    from twinbayes.run.pipeline import _comparison_settings, fit_for_study
    from twinbayes.run.study import example_study_path, load_study
    from twinbayes.spec.model_spec import load_spec

    study = load_study(example_study_path())
    patient = study.load_patient()
    ready = {}
    for i, source in enumerate(study.specs, 1):
        spec = load_spec(source)
        twin = fit_for_study(study, i, spec, patient)
        ready[spec.name] = (
            dataclasses.replace(twin, compiled=None),
            Scoring.of(_comparison_settings(study))(twin),
        )
    PICKLE.write_bytes(pickle.dumps(ready))


def run(free: list[str], out: str) -> None:
    """The example with the twins named in ``free`` fitted and scored for free."""
    from concurrent.futures import Future

    import twinbayes.run.pipeline as pipeline
    from twinbayes.run.cli import main

    ready = pickle.loads(PICKLE.read_bytes())
    fit, submit = pipeline.fit, pipeline.ScoreAhead.submit

    def free_fit(spec, patient, **kwargs):
        return ready[spec.name][0] if spec.name in free else fit(spec, patient, **kwargs)

    def free_submit(self, twin):
        if twin.name in free and self._thread is not None:
            self._futures[twin.name] = Future()
            self._futures[twin.name].set_result(ready[twin.name][1])
        else:
            submit(self, twin)

    pipeline.fit, pipeline.ScoreAhead.submit = free_fit, free_submit
    if main(["run", "--force", "--out", out, "--quiet"]) != 0:
        raise SystemExit("the example did not run to the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--run", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("twins", nargs="*")
    args = parser.parse_args()
    if args.setup:
        return setup()
    if args.run is not None:
        return run(args.run[1:], args.run[0])
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_study import _digest

    for r in range(args.rounds):
        for free in [[], *[[t] for t in args.twins]]:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, __file__, "--run", str(out), *free],
                    check=True,
                    capture_output=True,
                )
                wall = time.perf_counter() - t0
                print(f"round {r} free {free or '-'}: {wall:.1f} s, digest {_digest(out)[:16]}")


if __name__ == "__main__":
    main()
