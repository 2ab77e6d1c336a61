"""twinbayes vs Stan: min bulk ESS per second of sampling, same model, priors and data.

Theophylline subject 1 (the pre-dose sample at t = 0 left out for both, as
twinbayes does), the bundled ``pk_1cmt_oral`` and ``pk_2cmt_oral`` specs and
their line-by-line Stan translations below; 4 chains x 1000 warm-up x 1000
draws; each sampler run ``--rounds`` times with different seeds, interleaved,
in one process.  Sampling time excludes compilation for both (twinbayes:
``Twin.timings["sample"]``, the nutpie run; Stan: the ``sample`` call of a
built pystan model).  Both samplers use the same target acceptance rate
(twinbayes' default 0.95; Stan's ``delta``).  ESS: ArviZ rank-normalised bulk ESS, minimum over the
model parameters.

Run::

    bash scripts/setup-venv.sh bench
    .venv/bin/python benchmarks/bench_stan.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import arviz as az
import numpy as np
import xarray as xr

from twinbayes import Patient, load_spec
from twinbayes.dynamics.predict import design_for
from twinbayes.fit import fit
from twinbayes.library import data_path

PRIORS = """
  ka ~ lognormal(0.0, 1.0);
  CL ~ lognormal(1.1, 1.0);
  sigma_add ~ normal(0, 1.0);
  sigma_prop ~ normal(0, 0.2);
"""

STAN = {
    "pk_1cmt_oral": """
data { int<lower=1> N; vector[N] t; vector[N] y; real dose; }
parameters { real<lower=0> ka; real<lower=0> CL; real<lower=0> V; real<lower=0> sigma_add; real<lower=0> sigma_prop; }
model {
  real ke = CL / V;
  vector[N] mu = dose * ka / (V * (ka - ke)) * (exp(-ke * t) - exp(-ka * t));
""" + PRIORS + """
  V ~ lognormal(3.4, 1.0);
  y ~ normal(mu, sqrt(square(sigma_add) + square(sigma_prop * mu)));
}
""",
    "pk_2cmt_oral": """
data { int<lower=1> N; vector[N] t; vector[N] y; real dose; }
parameters { real<lower=0> ka; real<lower=0> CL; real<lower=0> V1; real<lower=0> Q; real<lower=0> V2;
             real<lower=0> sigma_add; real<lower=0> sigma_prop; }
model {
  real k10 = CL / V1; real k12 = Q / V1; real k21 = Q / V2;
  real s = k10 + k12 + k21;
  real alpha = 0.5 * (s + sqrt(square(s) - 4 * k10 * k21));
  real beta = 0.5 * (s - sqrt(square(s) - 4 * k10 * k21));
  vector[N] mu = dose / V1 * ka * ((k21 - alpha) / ((ka - alpha) * (beta - alpha)) * exp(-alpha * t)
                 + (k21 - beta) / ((ka - beta) * (alpha - beta)) * exp(-beta * t)
                 + (k21 - ka) / ((alpha - ka) * (beta - ka)) * exp(-ka * t));
""" + PRIORS + """
  V1 ~ lognormal(3.0, 1.0);
  Q ~ lognormal(0.7, 1.0);
  V2 ~ lognormal(3.0, 1.0);
  y ~ normal(mu, sqrt(square(sigma_add) + square(sigma_prop * mu)));
}
""",
}


def min_bulk_ess(posterior: xr.Dataset, names) -> float:
    ess = az.ess(xr.DataTree.from_dict({"posterior": posterior[list(names)]}), method="bulk").to_dataset()
    return float(min(float(ess[n]) for n in names))


def run_stan(code, data, names, seed, chains, tune, draws, delta):
    import stan  # pystan 3; `pip install -e .[bench]`

    model = stan.build(code, data=data, random_seed=seed)  # seeds are fixed at build; cached after the first
    t0 = time.perf_counter()
    f = model.sample(num_chains=chains, num_warmup=tune, num_samples=draws, delta=delta)
    dt = time.perf_counter() - t0
    post = xr.Dataset({n: (("chain", "draw"), f[n].reshape(draws, chains).T) for n in names})
    return dt, min_bulk_ess(post, names)


def run_twinbayes(spec, patient, seed, chains, tune, draws, target_accept):
    twin = fit(spec, patient, seed=seed, chains=chains, tune=tune, draws=draws, target_accept=target_accept, posterior_predictive=False)
    names = list(spec.parameters)
    return twin.timings["sample"], min_bulk_ess(twin.idata["posterior"].to_dataset(), names), twin.timings["compile"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--specs", nargs="+", default=list(STAN))
    ap.add_argument("--target-accept", type=float, default=0.95, help="for both samplers (Stan: delta)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    import stan

    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    results = {}
    for name in args.specs:
        spec = load_spec(name)
        design = design_for(spec, patient)
        t, y = design.times["concentration"], design.values["concentration"]
        dose = float(design.doses["oral"][1][0])
        data = {"N": len(t), "t": t.tolist(), "y": y.tolist(), "dose": dose}
        t0 = time.perf_counter()
        stan.build(STAN[name], data=data, random_seed=1)
        stan_compile = time.perf_counter() - t0
        names = list(spec.parameters)
        rows = {"twinbayes": [], "stan": []}
        for r in range(args.rounds):
            seed = 1000 + r
            tb_time, tb_ess, tb_compile = run_twinbayes(spec, patient, seed, args.chains, args.tune, args.draws, args.target_accept)
            st_time, st_ess = run_stan(STAN[name], data, names, seed, args.chains, args.tune, args.draws, args.target_accept)
            rows["twinbayes"].append((tb_time, tb_ess))
            rows["stan"].append((st_time, st_ess))
            print(f"{name} round {r}: twinbayes {tb_time:.3f} s, ESS {tb_ess:.0f} ({tb_ess / tb_time:.0f}/s); "
                  f"Stan {st_time:.3f} s, ESS {st_ess:.0f} ({st_ess / st_time:.0f}/s)", file=sys.stderr, flush=True)
        med = {k: statistics.median(e / s for s, e in v) for k, v in rows.items()}
        results[name] = {
            "twinbayes_ess_per_s": med["twinbayes"],
            "stan_ess_per_s": med["stan"],
            "ratio": med["twinbayes"] / med["stan"],
            "twinbayes_sampling_s": [s for s, _ in rows["twinbayes"]],
            "stan_sampling_s": [s for s, _ in rows["stan"]],
            "twinbayes_min_bulk_ess": [e for _, e in rows["twinbayes"]],
            "stan_min_bulk_ess": [e for _, e in rows["stan"]],
            "twinbayes_compile_s": tb_compile,
            "stan_first_build_s": stan_compile,  # near 0 when httpstan's cache already holds the model
        }
    print(f"\n{'model':<14} {'twinbayes ESS/s':>16} {'Stan ESS/s':>11} {'ratio':>6}   (median of {args.rounds} rounds)")
    for name, r in results.items():
        print(f"{name:<14} {r['twinbayes_ess_per_s']:>16.0f} {r['stan_ess_per_s']:>11.0f} {r['ratio']:>6.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
