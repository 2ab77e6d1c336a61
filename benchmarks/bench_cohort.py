"""Cohort throughput on Dask: a plain loop vs a LocalCluster of 1 and 2 workers (issue #18).

The same tasks (Theophylline subjects x oral PK specs, 4 chains x 1000 + 1000 each, one chain
thread per fit) run three ways, after one warm-up pass that fills the on-disk compile caches: a
plain loop over ``run_task`` in a fresh Python process (no Dask), and ``run_cohort`` on a
``LocalCluster`` of 1 and of 2 workers (fresh processes too, cluster start-up included).  Every
way starts from the same state: imports, model building and compiled code loaded from the disk
cache are paid in each.  Reported: wall time, tasks per minute, the Dask path's overhead per task
against the loop (1 worker), and the parallel efficiency ``T(1 worker) / (2 T(2 workers))``.

Run: ``.venv/bin/python benchmarks/bench_cohort.py [--subjects N] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twinbayes.run.cohort import cohort_tasks, run_cohort

SPECS = ["pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]


LOOP = """
import pickle, sys
from twinbayes.run.cohort import run_task
tasks, folder = pickle.load(open(sys.argv[1], "rb"))
for t in tasks:
    run_task(t, folder)
"""


def _loop(tasks) -> float:
    """``run_task`` over the tasks in a fresh interpreter (as a worker would be)."""
    work = Path(tempfile.mkdtemp())
    (work / "tasks").mkdir()
    with open(work / "tasks.pkl", "wb") as f:
        pickle.dump((list(tasks), str(work / "tasks")), f)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", LOOP, str(work / "tasks.pkl")], check=True, capture_output=True
    )
    return time.perf_counter() - start


def _dask(tasks, workers: int) -> float:
    out = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    run_cohort(tasks, out, n_workers=workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    subjects = [str(s) for s in range(1, args.subjects + 1)]
    tasks = cohort_tasks("bundled:theophylline.csv", SPECS, subjects=subjects, seed=1, cores=1)
    _loop(tasks)  # warm-up: every task's compiled model in the on-disk caches
    loop = _loop(tasks)
    one = _dask(tasks, 1)
    two = _dask(tasks, 2)
    n = len(tasks)
    result = {
        "tasks": n,
        "sampler": "4 chains x 1000 + 1000, one chain thread per fit, warm on-disk compile caches, fresh processes",
        "loop_s": round(loop, 2),
        "dask_1_worker_s": round(one, 2),
        "dask_2_workers_s": round(two, 2),
        "tasks_per_min": {
            "loop": round(60 * n / loop, 1),
            "1 worker": round(60 * n / one, 1),
            "2 workers": round(60 * n / two, 1),
        },
        "dask_overhead_per_task_s": round((one - loop) / n, 3),
        "parallel_efficiency_1_to_2": round(one / (2 * two), 3),
        "machine": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
