"""10-fold K-fold of one twin against the fit it checks (issue #14, must-show 2).

pk_1cmt_oral on Theophylline subject 1, fitted with the defaults (4 chains x 1000 + 2000). Then,
in rounds interleaved in one process, ``kfold(twin, k=10)`` as it runs (refits of 4 chains x
300 + 400, judged by the held-out gate and escalated where they fall short) and with the fit's own
settings (4 chains x 1000 + 2000); wall-clock seconds of each against the fit's sampling time,
compilations counted (none may happen: ``compile_model`` raises), how many folds pass the gate,
the two elpd estimates and their Monte Carlo SEs.

    .venv/bin/python benchmarks/bench_kfold.py [--rounds 3] [--json FILE]
"""

import argparse
import json
import platform
import time
from unittest import mock

import numpy as np

import twinbayes.fitting.twin as fitting
from twinbayes import Patient, load_spec
from twinbayes.comparison import kfold
from twinbayes.inputs.library import data_path

FIT_SETTINGS = {"tune": 1000, "draws": 2000}


def _timed_kfold(twin, seed: int, **settings) -> tuple[float, dict]:
    t0 = time.perf_counter()
    folds = kfold(twin, k=10, seed=seed, **settings)
    return time.perf_counter() - t0, dict(folds.attrs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    twin = fitting.fit(load_spec("pk_1cmt_oral"), patient, seed=1)
    sample = twin.timings["sample"]
    rounds = []
    with mock.patch.object(fitting, "compile_model", side_effect=AssertionError("compiled")):
        for r in range(args.rounds):
            t_quick, quick = _timed_kfold(twin, seed=r)
            t_full, slow = _timed_kfold(twin, seed=r, **FIT_SETTINGS)
            rounds.append(
                dict(
                    short_s=t_quick,
                    full_s=t_full,
                    short_ratio=t_quick / sample,
                    full_ratio=t_full / sample,
                    elpd_short=quick["elpd"],
                    elpd_full=slow["elpd"],
                    se=quick["se"],
                    mcse_short=quick["mcse"],
                    mcse_full=slow["mcse"],
                    converged_short=quick["refits_converged"],
                    converged_full=slow["refits_converged"],
                )
            )
            print(
                f"round {r}: 10-fold {t_quick:.2f} s ({t_quick / sample:.2f}x the fit's sampling "
                f"{sample:.2f} s; {quick['refits_converged']}/10 folds pass), with the fit's "
                f"settings {t_full:.2f} s ({t_full / sample:.2f}x; "
                f"{slow['refits_converged']}/10 pass); elpd {quick['elpd']:.2f} "
                f"(MCSE {quick['mcse']:.2f}) vs {slow['elpd']:.2f} ({slow['mcse']:.2f}), "
                f"se {quick['se']:.2f}",
                flush=True,
            )
    out = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=platform.processor() or platform.machine(),
        spec="pk_1cmt_oral",
        fit_compile_s=twin.timings["compile"],
        fit_sample_s=sample,
        compilations_during_kfold=0,  # compile_model raised AssertionError otherwise
        median_short_ratio=float(np.median([r["short_ratio"] for r in rounds])),
        median_full_ratio=float(np.median([r["full_ratio"] for r in rounds])),
        rounds=rounds,
    )
    print(json.dumps({k: v for k, v in out.items() if k != "rounds"}, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
