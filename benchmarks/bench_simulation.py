"""Scenario simulation per (draw x time point): dose-by-dose superposition against the dense
``times x doses x draws`` sum it replaced, in one process, same inputs (issue #14, must-show 3).

For the oral PK specs: 8000 posterior-like draws (prior draws), the example study's regimens
(320 mg q12h x 6 and 160 mg q6h x 12) on its 289-point grid, the states the observation needs.
``dense`` and ``by_dose`` evaluate all draws at once; ``chunks_before`` and ``chunks_now`` are
what predictions run (``kinds.in_draw_chunks`` around ``linear.state_amounts``) with the chunk
size of session 13 (sized for the dense sum: ~75 draws a chunk for 12 doses) and of session 14
(sized for the dose-by-dose sum: ~900 draws).  All give the same bits
(``tests/test_superposition.py``); best of ``--rounds``.
Usage: ``.venv/bin/python benchmarks/bench_simulation.py [--rounds 3] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial

import numpy as np

import twinbayes as tb
from twinbayes.dynamics import kinds, linear
from twinbayes.run.validation import prior_draw
from twinbayes.spec.expr import NUMPY
from twinbayes.spec.scenarios import Scenario

SPECS = ["pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]
REGIMENS = [
    Scenario.regimen("320 mg q12h x6", 320, "oral", interval=12, n_doses=6),
    Scenario.regimen("160 mg q6h x12", 160, "oral", interval=6, n_doses=12),
]
TIMES = np.arange(0, 72.0001, 0.25)
DRAWS = 8000


def _env(spec, seed):
    rng = np.random.default_rng(seed)
    draws = [prior_draw(spec, rng) for _ in range(DRAWS)]
    env = {k: np.array([d[k] for d in draws]) for k in draws[0]}
    return spec.evaluate_derived({**spec.fixed_values(), **env}, NUMPY)


def _time(fn, rounds):
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for name in SPECS:
        spec = tb.load_spec(name)
        env = _env(spec, 1)
        obs = next(iter(spec.observations.values()))
        states = [s for s in spec.states if s in obs.expression.symbols]
        route = spec.routes["oral"]
        for sc in REGIMENS:
            t_dose, amount, _ = sc.to_doses(spec)["oral"]
            inputs = (spec, route, env, TIMES, t_dose, amount, states)
            doses = {"oral": (t_dose, amount)}
            model = partial(linear.state_amounts, spec, times=TIMES, doses=doses, states=states)
            impls = {
                "dense": partial(linear._superpose_dense, *inputs, NUMPY, True, False),
                "by_dose": partial(linear._superpose_by_dose, *inputs, False),
                "chunks_before": partial(
                    kinds.in_draw_chunks, model, env, TIMES.size * len(t_dose) * 2
                ),
                "chunks_now": partial(kinds.in_draw_chunks, model, env, TIMES.size * 2),
            }
            timings = {impl: _time(f, args.rounds) for impl, f in impls.items()}
            per = {k: v / (DRAWS * len(TIMES)) * 1e9 for k, v in timings.items()}
            rows.append(
                {"spec": name, "scenario": sc.name, "seconds": timings, "ns_per_draw_time": per}
            )
            print(f"{name:18s} {sc.name:16s} " + "  ".join(f"{k} {v:6.1f}" for k, v in per.items())
                  + " ns per draw x time")  # fmt: skip
    record = {"draws": DRAWS, "times": len(TIMES), "rounds": args.rounds, "cases": rows,
              "machine": platform.platform()}  # fmt: skip
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
