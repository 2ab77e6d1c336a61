"""Stiff binding: the explicit (Dormand-Prince 5(4)) and implicit (ESDIRK3(2)4L[2]SA) integrators on
the full TMDD twin, with binding 1e3 to 1e6 times faster than elimination (issue #16, must-show 3).

Per ratio and method: the time of one solve with forward sensitivities (what each NUTS gradient
costs; median of ``--rounds``) on the design of ``tests/test_stiff.py`` (three doses, 56 days),
or the failure the explicit method reports; then NUTS fits of a simulated patient (2 chains x
300 + 300, fixed seeds) with each method where it can: wall time and the smallest bulk ESS per
second (binding and target turnover known, as in ``tests/test_stiff.py``).  Usage: ``.venv/bin/python benchmarks/bench_stiff.py [--rounds 20] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_stiff import BOLUSES, DOSES, KNOWN, TIMES, TMDD, binding, binding_known  # noqa: E402

import twinbayes as tb  # noqa: E402
from twinbayes.dynamics.ode import Forcing, OdeError, ode_system, solve  # noqa: E402
from twinbayes.fitting.ladder import NO_LADDER  # noqa: E402

RATIOS = (1e3, 1e4, 1e5, 1e6)
FIT_TIMES = np.array([0.04, 0.25, 1.0, 3.0, 6.9, 7.5, 10.0, 13.9, 17.0, 21.0, 28.0, 42.0])


def solve_cost(spec, ratio: float, rounds: int) -> dict:
    system = ode_system(spec)
    env = binding(ratio)
    p = np.array([env[q] for q in system.params])
    y0 = np.array([0.0, env["R0"], 0.0])
    forcing = Forcing.for_doses(spec, TIMES, DOSES)
    try:
        solve(spec, p, y0, forcing, sens=True)  # compiles
    except OdeError as err:
        return {"ratio": ratio, "method": spec.method, "failed": str(err)}
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        solve(spec, p, y0, forcing, sens=True)
        times.append(time.perf_counter() - t0)
    return {"ratio": ratio, "method": spec.method, "ms_per_solve": 1e3 * float(np.median(times))}


def fit_cost(method: str, ratio: float) -> dict:
    spec = dataclasses.replace(binding_known(ratio, KNOWN), method=method)
    truth = binding(ratio)
    patient = tb.simulate_patient(spec, truth, FIT_TIMES, BOLUSES, seed=5)
    t0 = time.perf_counter()
    try:
        twin = tb.fit(spec, patient, seed=3, draws=300, tune=300, chains=2, ladder=NO_LADDER)
    except Exception as err:  # noqa: BLE001 - the benchmark records any failure
        return {
            "ratio": ratio,
            "method": spec.method,
            "failed": f"{type(err).__name__}: {err}"[:300],
        }
    wall = time.perf_counter() - t0
    d, sampling = twin.diagnostics, float(twin.timings["sample"])
    ess = float(d.table.ess_bulk.min())
    return {"ratio": ratio, "method": spec.method, "fit_s": wall, "sampling_s": sampling,
            "min_ess_bulk": ess, "divergent": int(d.divergent), "min_ess_bulk_per_s": ess / sampling,
            "gate_passed": bool(d.passed)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-fits", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    specs = (TMDD, dataclasses.replace(TMDD, method="explicit"))
    solves = [solve_cost(s, r, args.rounds) for r in RATIOS for s in specs]
    for row in solves:
        print(json.dumps(row), flush=True)
    # the explicit method is not fitted at 1e5: its solves stop at max_steps (see the solves)
    cases = [("implicit", 1e3), ("explicit", 1e3), ("implicit", 1e5)]
    fits = [] if args.no_fits else [fit_cost(m, r) for m, r in cases]
    for row in fits:
        print(json.dumps(row), flush=True)
    record = {"solves": solves, "fits": fits, "rounds": args.rounds, "machine": platform.platform()}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
