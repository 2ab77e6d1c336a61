"""ESS per second of NUTS with and without LLVM fast-math in the compiled log density.

twinbayes compiles log densities without fast-math so that cached and fresh
compilations give the same numbers (``twinbayes.model.twin_model.ieee_numerics``).  This
measures what that costs: for bundled twins, minimum bulk ESS over sampling
seconds (compile excluded), fast-math on and off alternating within one
process, several rounds.  Usage::

    .venv/bin/python benchmarks/bench_numerics.py [--rounds 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time

import arviz as az
import numpy as np
import nutpie
import pytensor

import twinbayes as tb
from twinbayes.dynamics.design import design_for
from twinbayes.inputs.library import data_path
from twinbayes.model.twin_model import TwinModel

CASES = [
    ("pk_1cmt_oral", "theophylline.csv", "1"),
    ("pk_2cmt_oral", "theophylline.csv", "1"),
    ("tumor_gompertz", "benzekry_llc_tumor_volume.csv", "0"),
    ("glucose_minimal", "ivgtt_pacini_bergman_1986.csv", None),
]


def ess_per_second(
    spec_name: str, data: str, subject: str | None, fastmath: bool, seed: int
) -> dict:
    spec = tb.load_spec(spec_name)
    design = design_for(spec, tb.Patient.from_csv(data_path(data), subject=subject))
    model = TwinModel.of(spec).pymc_model(design)  # sets fast-math off ...
    pytensor.config.numba__fastmath = fastmath  # ... and this decides what is compiled now
    compiled = nutpie.compile_pymc_model(model)
    t0 = time.perf_counter()
    idata = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, seed=seed, progress_bar=False)
    seconds = time.perf_counter() - t0
    ess = az.ess(idata, var_names=list(spec.parameters), method="bulk")
    min_ess = min(float(ess[p].values) for p in spec.parameters)
    steps = float(idata["sample_stats"]["n_steps"].values.sum())  # leapfrog steps after warm-up
    return {
        "seconds": seconds,
        "min_bulk_ess": min_ess,
        "ess_per_s": min_ess / seconds,
        "gradients_per_s": steps / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    results = []
    for case in CASES:
        for r in range(args.rounds):
            for fastmath in (True, False):
                res = ess_per_second(*case, fastmath=fastmath, seed=r + 1)
                results.append({"spec": case[0], "round": r, "fastmath": fastmath, **res})
                print(json.dumps(results[-1]), flush=True)
    print("\nmedians over rounds; ratio = IEEE / fast-math (1 = no cost)")
    print(
        f"{'spec':<18} {'ESS/s fast':>10} {'ESS/s IEEE':>10} {'ratio':>6} {'grad/s fast':>12} {'grad/s IEEE':>12} {'ratio':>6}"
    )
    for spec in dict.fromkeys(c[0] for c in CASES):
        row = []
        for key in ("ess_per_s", "gradients_per_s"):
            fast = np.array([x[key] for x in results if x["spec"] == spec and x["fastmath"]])
            ieee = np.array([x[key] for x in results if x["spec"] == spec and not x["fastmath"]])
            row += [np.median(fast), np.median(ieee), np.median(ieee / fast)]
        print(
            f"{spec:<18} {row[0]:>10.0f} {row[1]:>10.0f} {row[2]:>6.2f} {row[3]:>12.0f} {row[4]:>12.0f} {row[5]:>6.2f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
