"""nutpie's mass-matrix adaptations, diagonal vs low-rank, on bundled twins (issue #16).

Each twin is fitted to Theophylline subject 1 (compiled once), then sampled with
``adaptation="diag"`` and ``"low_rank"`` alternately, ``--rounds`` times with fresh seeds, in one
process: 4 chains x 1000 warm-up + 1000 draws, target acceptance 0.95 (twinbayes' default).
Reported per run: sampling seconds, minimum bulk ESS over the spec's parameters (arviz-stats'
rank-normalised bulk ESS, through ``diagnostics.diagnose``), ESS/s and divergences.  ``fit(adaptation=...)`` and ``[sampler] adaptation``
choose between them; the default stays ``diag`` (see docs/benchmarks.md for why).

    .venv/bin/python benchmarks/bench_adaptation.py [--rounds 3] [--specs ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import nutpie

from twinbayes import Patient, load_spec
from twinbayes.fitting.diagnostics import diagnose
from twinbayes.fitting.ladder import ADAPTATIONS, NO_LADDER
from twinbayes.fitting.twin import fit
from twinbayes.inputs.library import data_path

SPECS = ["pk_1cmt_oral_mm", "pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]


def one_run(compiled, names: list[str], adaptation: str, seed: int) -> dict:
    """Sample once; seconds, min bulk ESS, ESS/s and divergences."""
    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=1000,
        tune=1000,
        chains=4,
        seed=seed,
        target_accept=0.95,
        adaptation=adaptation,
        progress_bar=False,
    )
    seconds = time.perf_counter() - t0
    post, stats = idata["posterior"], idata["sample_stats"]
    table = diagnose(
        {n: post[n].values for n in names},
        stats["diverging"].values,
        stats["maxdepth_reached"].values,
    ).table
    min_ess = float(table.ess_bulk.min())
    return dict(
        seconds=seconds,
        min_bulk_ess=min_ess,
        ess_per_s=min_ess / seconds,
        divergent=int(idata["sample_stats"]["diverging"].sum()),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--specs", nargs="+", default=SPECS)
    ap.add_argument("--json")
    args = ap.parse_args()
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    out = {}
    for name in args.specs:
        spec = load_spec(name)
        twin = fit(spec, patient, seed=1, draws=100, tune=100, ladder=NO_LADDER)  # compiles
        compiled = twin.compiled.with_data(obs_weight=np.ones(twin.design.n_obs))
        runs = {a: [] for a in ADAPTATIONS}
        for r in range(args.rounds):
            for adaptation in ADAPTATIONS:
                run = one_run(compiled, list(spec.parameters), adaptation, 100 + r)
                runs[adaptation].append(run)
                print(name, r, adaptation, {k: round(v, 2) for k, v in run.items()}, flush=True)
        out[name] = {
            a: dict(
                median_ess_per_s=statistics.median(x["ess_per_s"] for x in v),
                divergent=[x["divergent"] for x in v],
                runs=v,
            )
            for a, v in runs.items()
        }
        out[name]["ratio_low_rank_to_diag"] = (
            out[name]["low_rank"]["median_ess_per_s"] / out[name]["diag"]["median_ess_per_s"]
        )
    for name, r in out.items():
        print(
            f"{name:<20} diag {r['diag']['median_ess_per_s']:7.0f}/s  low_rank "
            f"{r['low_rank']['median_ess_per_s']:7.0f}/s  ratio {r['ratio_low_rank_to_diag']:.2f}  "
            f"divergent diag {r['diag']['divergent']} low_rank {r['low_rank']['divergent']}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "cpus": 2, "results": out}, fh, indent=1)


if __name__ == "__main__":
    main()
