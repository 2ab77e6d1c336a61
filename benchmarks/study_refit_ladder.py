"""What each rung of the refit ladder buys: held-out elpd per rung against a long reference refit.

An exact LOO refit that fails its :class:`~twinbayes.comparison.cv.HeldOutGate` is refitted
along :data:`~twinbayes.comparison.cv.REFIT_LADDER` (target_accept 0.99 with 2x warm-up and
draws, then 0.995 with 4x).  On the bundled example the lag twin's three refits fail every rung
and cost most of the comparison's processor time, so a futility rule (stop escalating when a
rung does not help) looked like a saving.  This script measures whether the rungs help: for
every observation of every example twin whose Pareto k calls for a refit, the held-out elpd,
its MCSE and the gate's verdict at each rung (the seeds :func:`heldout_elpd` uses), and a
reference refit of the same observation (4 chains x 10 000 draws after 2000 warm-up,
target_accept 0.999).  Its table is in docs/benchmarks.md ("Session 16").

Run::

    .venv/bin/python benchmarks/study_refit_ladder.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from twinbayes.comparison.cv import REFIT_LADDER, REFIT_SETTINGS, HeldOutGate, heldout_elpd
from twinbayes.comparison.loo import loo
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.fitting.twin import Refitter
from twinbayes.run.pipeline import fit_for_study
from twinbayes.run.study import example_study_path, load_study
from twinbayes.spec.model_spec import load_spec

REFERENCE = {"tune": 2000, "draws": 10_000, "target_accept": 0.999}


def _refit(twin, hold: np.ndarray, seed: int, settings: dict) -> dict:
    """One refit with ``settings`` (no escalation): held-out elpd, MCSE, verdict, seconds."""
    t0 = time.perf_counter()
    held = heldout_elpd(Refitter(twin, **settings), hold, seed, HeldOutGate(), NO_LADDER)
    return {
        "elpd": float(held.elpd_i[0]),
        "mcse": held.mcse,
        "passed": held.passed,
        "reasons": list(held.reasons),
        "seconds": time.perf_counter() - t0,
    }


def study_twin(twin, seed: int) -> list[dict]:
    """Every high-k observation of ``twin``: each rung as ``loo(twin, seed=seed)`` runs it, and the
    reference."""
    scores = loo(twin, refit=False)
    high = np.flatnonzero(scores["pareto_k"].values > scores.attrs["threshold"])
    base = {k: v for k, v in twin.settings.items() if k in ("chains", "sampler", "adaptation")}
    base |= {**REFIT_SETTINGS, "target_accept": twin.settings["target_accept"]}
    rows = []
    for j in high:
        hold = np.zeros(twin.design.n_obs, bool)
        hold[j] = True
        rungs = []
        for step in range(len(REFIT_LADDER.rungs) + 1):
            first = {**base, "seed": seed + 1 + int(j)}  # as loo's refit of observation j
            s = REFIT_LADDER.settings(first, step) if step else first
            run = {k: s[k] for k in ("tune", "draws", "target_accept")}
            rungs.append({"step": step, **run, **_refit(twin, hold, s["seed"], run)})
        reference = _refit(twin, hold, 99 + int(j), REFERENCE)
        rows.append(
            {
                "twin": twin.name,
                "obs": int(j),
                "pareto_k": float(scores["pareto_k"].values[j]),
                "rungs": rungs,
                "reference": reference,
            }
        )
    return rows


def _print(rows: list[dict]) -> None:
    print(
        f"{'twin':18} {'obs':>3} {'rung':>4} {'t_acc':>6} {'draws':>6} {'elpd':>8} {'mcse':>6} "
        f"{'|ref diff|':>10}  verdict"
    )
    for r in rows:
        ref = r["reference"]
        for g in r["rungs"]:
            verdict = "pass" if g["passed"] else "; ".join(g["reasons"])
            print(
                f"{r['twin']:18} {r['obs']:>3} {g['step']:>4} {g['target_accept']:>6} "
                f"{g['draws']:>6} {g['elpd']:>8.3f} {g['mcse']:>6.3f} "
                f"{abs(g['elpd'] - ref['elpd']):>10.3f}  {verdict}"
            )
        print(
            f"{'':18} {'':>3} {'ref':>4} {REFERENCE['target_accept']:>6} "
            f"{REFERENCE['draws']:>6} {ref['elpd']:>8.3f} {ref['mcse']:>6.3f} {'':>10}  "
            f"{'; '.join(ref['reasons']) or 'pass'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    study = load_study(example_study_path())
    patient = study.load_patient()
    rows = []
    for i, source in enumerate(study.specs, 1):  # fitted as `twinbayes run` fits them
        spec = load_spec(source)
        twin = fit_for_study(study, i, spec, patient)
        rows += study_twin(twin, study.seed)  # the comparison's seed (pipeline)
    _print(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"reference": REFERENCE, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
