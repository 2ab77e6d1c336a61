"""The 10-seed recovery of ``tests/test_fit.py``, seed by seed, with each fit's gate verdict.

The same design, truth, simulation seeds and fit settings as the slow test
``test_recovery_of_each_parameter_in_8_of_10_seeds`` (``draws=1000``, the default ladder, 95 %
intervals), printed as JSON lines as they finish, so a long run leaves evidence when it is
stopped, and coverage is never read without the gate's verdict beside it.

Run::

    .venv/bin/python benchmarks/recovery_by_seed.py SPEC [FIRST_SEED]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fit import recovery_design  # noqa: E402

from twinbayes import fit, load_spec, simulate_patient  # noqa: E402


def main() -> None:
    spec = load_spec(sys.argv[1])
    truth = spec.typical_values()
    times, doses, inputs = recovery_design(spec)
    covariates = {c.name: c.reference for c in spec.covariates.values()}
    for seed in range(int(sys.argv[2]) if len(sys.argv) > 2 else 0, 10):
        t0 = time.perf_counter()
        patient = simulate_patient(
            spec, truth, times, doses, seed=seed, inputs=inputs, covariates=covariates
        )
        twin = fit(spec, patient, seed=seed, draws=1000)
        post = twin.idata["posterior"]
        covered = {
            p: bool(np.quantile(post[p].values, 0.025) <= v <= np.quantile(post[p].values, 0.975))
            for p, v in truth.items()
            if p in spec.parameters
        }
        record = {
            "spec": spec.name,
            "seed": seed,
            "converged": bool(twin.converged),
            "attempts": len(twin.attempts),
            "covered": covered,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
