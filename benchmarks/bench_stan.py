"""twinbayes vs Stan: min bulk ESS per second of sampling, same model, priors and data.

Models: the bundled ``pk_1cmt_oral`` and ``pk_2cmt_oral`` specs on Theophylline
subject 1 (the pre-dose sample at t = 0 left out for both, as twinbayes does), the
Michaelis-Menten ``pk_1cmt_oral_mm`` on the same data (Stan: ``ode_rk45_tol`` and
``ode_bdf_tol``, the engine's tolerances),
and the nonlinear ``glucose_minimal`` and ``glucose_minimal_delay`` ODE specs
on the Pacini & Bergman (1986) IVGTT (glucose from 8 min, measured insulin as
forcing).  Each has a line-by-line Stan translation below.  The ODE models
are solved the same way in both: adaptive Dormand-Prince 5(4)
(Stan ``ode_rk45_tol``) with the same tolerances and step limit, restarted
at every insulin knot and observation time with the linearly interpolated
insulin of that interval (what twinbayes' engine does).  4 chains x 1000 warm-up x 1000
draws; each sampler run ``--rounds`` times with different seeds, interleaved,
in one process.  Sampling time excludes compilation for both (twinbayes:
``Twin.timings["sample"]``, the nutpie run; Stan: the ``sample`` call of a
built pystan model).  Both samplers use the same target acceptance rate
(twinbayes' default 0.95; Stan's ``delta``).  ESS: ArviZ rank-normalised bulk ESS, minimum over the
model parameters.

Run::

    bash scripts/setup-venv.sh bench
    .venv-bench/bin/python benchmarks/bench_stan.py --rounds 3  (Python 3.12: pystan fails on 3.13)
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
from twinbayes.dynamics.design import design_for
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.fitting.twin import fit
from twinbayes.inputs.library import data_path

PRIORS = """
  ka ~ lognormal(0.0, 1.0);
  CL ~ lognormal(1.1, 1.0);
  sigma_add ~ normal(0, 1.0);
  sigma_prop ~ normal(0, 0.2);
"""

GLUCOSE_PRIORS = """
  G0 ~ lognormal(5.7, 0.3);
  Gb ~ lognormal(4.5, 0.15);
  SG ~ lognormal(-3.7, 0.7);
  SI ~ lognormal(-7.6, 1.0);
  p2 ~ lognormal(-3.7, 0.7);
  sigma ~ normal(0, 0.1);
  y ~ lognormal(log(mu), sigma);
"""

GLUCOSE = (
    """
functions {
  vector rhs(real t, vector z, real SG, real Gb, real SI, real p2, real Ib, real t0, real u0, real du) {
    real I = u0 + (t - t0) * du;
    vector[%(n)d] dz;
    %(rhs)s
    return dz;
  }
}
data { int<lower=2> K; array[K] real stops; vector[K - 1] u0; vector[K - 1] du; int<lower=1> N; array[N] int idx;
       vector[N] y; real Ib; real rtol; real atol; int max_steps; }
parameters { real<lower=0> G0; real<lower=0> Gb; real<lower=0> SG; real<lower=0> SI; real<lower=0> p2; real<lower=0> sigma; }
model {
  vector[%(n)d] z = rep_vector(0, %(n)d);
  vector[N] mu;
  int j = 1;
  z[1] = G0;
  for (k in 1:(K - 1)) {
    z = ode_rk45_tol(rhs, z, stops[k], {stops[k + 1]}, rtol, atol, max_steps, SG, Gb, SI, p2, Ib, stops[k], u0[k], du[k])[1];
    while (j <= N && idx[j] == k + 1) { mu[j] = z[1]; j += 1; }
  }
"""
    + GLUCOSE_PRIORS
    + """
}
"""
)

GLUCOSE_ONE_SOLVE = (
    """
functions {
  vector rhs(real t, vector z, real SG, real Gb, real SI, real p2, real Ib, array[] real kt, vector kv) {
    int k = 1;
    while (k < size(kt) - 1 && kt[k + 1] <= t) k += 1;
    real I = kv[k] + (t - kt[k]) * (kv[k + 1] - kv[k]) / (kt[k + 1] - kt[k]);
    vector[2] dz;
    dz[1] = -(SG + z[2]) * z[1] + SG * Gb;
    dz[2] = -p2 * z[2] + p2 * SI * (I - Ib);
    return dz;
  }
}
data { int<lower=2> M; array[M] real kt; vector[M] kv; int<lower=1> N; array[N] real t; vector[N] y; real Ib;
       real rtol; real atol; int max_steps; }
parameters { real<lower=0> G0; real<lower=0> Gb; real<lower=0> SG; real<lower=0> SI; real<lower=0> p2; real<lower=0> sigma; }
model {
  array[N] vector[2] z = ode_rk45_tol(rhs, [G0, 0]', 0, t, rtol, atol, max_steps, SG, Gb, SI, p2, Ib, kt, kv);
  vector[N] mu;
  for (i in 1:N) mu[i] = z[i][1];
"""
    + GLUCOSE_PRIORS
    + """
}
"""
)

STAN = {
    "pk_1cmt_oral": """
data { int<lower=1> N; vector[N] t; vector[N] y; real dose; }
parameters { real<lower=0> ka; real<lower=0> CL; real<lower=0> V; real<lower=0> sigma_add; real<lower=0> sigma_prop; }
model {
  real ke = CL / V;
  vector[N] mu = dose * ka / (V * (ka - ke)) * (exp(-ke * t) - exp(-ka * t));
"""
    + PRIORS
    + """
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
"""
    + PRIORS
    + """
  V1 ~ lognormal(3.0, 1.0);
  Q ~ lognormal(0.7, 1.0);
  V2 ~ lognormal(3.0, 1.0);
  y ~ normal(mu, sqrt(square(sigma_add) + square(sigma_prop * mu)));
}
""",
    "glucose_minimal": GLUCOSE
    % dict(
        n=2,
        rhs="dz[1] = -(SG + z[2]) * z[1] + SG * Gb;\n    dz[2] = -p2 * z[2] + p2 * SI * (I - Ib);",
    ),
    "glucose_minimal_delay": GLUCOSE
    % dict(
        n=3,
        rhs="dz[1] = -(SG + z[3]) * z[1] + SG * Gb;\n    dz[2] = p2 * (SI * (I - Ib) - z[2]);\n    dz[3] = p2 * (z[2] - z[3]);",
    ),
    # the same model solved by one ode_rk45 call with the insulin interpolated inside the RHS (kinks left to
    # the step-size control): Stan's usual way to write a forcing input
    "glucose_minimal_one_solve": GLUCOSE_ONE_SOLVE,
}
MM_ORAL = """
functions {
  vector rhs(real t, vector z, real ka, real Vmax, real Km, real V) {
    vector[2] dz;
    dz[1] = -ka * z[1];
    dz[2] = ka * z[1] - Vmax * (z[2] / V) / (Km + z[2] / V);
    return dz;
  }
}
data { int<lower=1> N; array[N] real t; vector[N] y; real dose; real rtol; real atol; int max_steps; }
parameters { real<lower=0> ka; real<lower=0> Vmax; real<lower=0> Km; real<lower=0> V; real<lower=0> sigma_prop; }
model {
  array[N] vector[2] z = %(solver)s(rhs, [dose, 0]', 0, t, rtol, atol, max_steps, ka, Vmax, Km, V);
  vector[N] mu;
  for (i in 1:N) mu[i] = z[i][2] / V;
  ka ~ lognormal(0.0, 1.0);
  Vmax ~ lognormal(2.3, 1.0);
  Km ~ lognormal(1.6, 1.0);
  V ~ lognormal(3.4, 0.7);
  sigma_prop ~ normal(0, 0.2);
  y ~ normal(mu, sigma_prop * mu);
}
"""
# Michaelis-Menten elimination after one oral dose (issue #16): one solve from the dose, with Stan's
# explicit Dormand-Prince (as twinbayes) and with its implicit BDF (CVODES), same tolerances
STAN["pk_1cmt_oral_mm"] = MM_ORAL % dict(solver="ode_rk45_tol")
STAN["pk_1cmt_oral_mm_bdf"] = MM_ORAL % dict(solver="ode_bdf_tol")
SPEC = {"glucose_minimal_one_solve": "glucose_minimal", "pk_1cmt_oral_mm_bdf": "pk_1cmt_oral_mm"}


def pk_data(spec, patient):
    design = design_for(spec, patient)
    t, y = design.times["concentration"], design.values["concentration"]
    return {
        "N": len(t),
        "t": t.tolist(),
        "y": y.tolist(),
        "dose": float(design.doses["oral"][1][0]),
    }


def glucose_data(spec, patient):
    """Stops, interpolated insulin and tolerances exactly as twinbayes' engine uses them."""
    from twinbayes.dynamics.ode import Forcing, _settings

    design = design_for(spec, patient)
    t, y = design.times["glucose"], design.values["glucose"]
    f = Forcing.build(t, design.inputs, ("I",))
    assert np.isin(
        t, f.stops
    ).all()  # every glucose sample is an insulin sample: the segments end at outputs
    rtol, atol, _, max_steps = _settings(spec)
    return {
        "K": len(f.stops),
        "stops": f.stops.tolist(),
        "u0": f.u0[:, 0].tolist(),
        "du": f.du[:, 0].tolist(),
        "N": len(t),
        "idx": (np.searchsorted(f.stops, t) + 1).tolist(),
        "y": y.tolist(),
        "Ib": design.baselines["Ib"],
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
    }


def glucose_one_solve_data(spec, patient):
    from twinbayes.dynamics.ode import _settings

    design = design_for(spec, patient)
    (kt, kv), t = design.inputs["I"], design.times["glucose"]
    rtol, atol, _, max_steps = _settings(spec)
    return {
        "M": len(kt),
        "kt": kt.tolist(),
        "kv": kv.tolist(),
        "N": len(t),
        "t": t.tolist(),
        "y": design.values["glucose"].tolist(),
        "Ib": design.baselines["Ib"],
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
    }


def mm_data(spec, patient):
    """One oral dose at t = 0 (the pre-dose sample left out, as twinbayes does); the engine's tolerances."""
    from twinbayes.dynamics.ode import _settings

    rtol, atol, _, max_steps = _settings(spec)
    return {**pk_data(spec, patient), "rtol": rtol, "atol": atol, "max_steps": max_steps}


DATA = {
    "pk_1cmt_oral_mm": ("theophylline.csv", 1, mm_data),
    "pk_1cmt_oral_mm_bdf": ("theophylline.csv", 1, mm_data),
    "glucose_minimal_one_solve": ("ivgtt_pacini_bergman_1986.csv", None, glucose_one_solve_data),
    "pk_1cmt_oral": ("theophylline.csv", 1, pk_data),
    "pk_2cmt_oral": ("theophylline.csv", 1, pk_data),
    "glucose_minimal": ("ivgtt_pacini_bergman_1986.csv", None, glucose_data),
    "glucose_minimal_delay": ("ivgtt_pacini_bergman_1986.csv", None, glucose_data),
}


def min_bulk_ess(posterior: xr.Dataset, names) -> float:
    ess = az.ess(
        xr.DataTree.from_dict({"posterior": posterior[list(names)]}), method="bulk"
    ).to_dataset()
    return float(min(float(ess[n]) for n in names))


def run_stan(code, data, names, seed, chains, tune, draws, delta, init):
    import stan  # pystan 3; `pip install -e .[bench]`

    model = stan.build(
        code, data=data, random_seed=seed
    )  # seeds are fixed at build; cached after the first
    t0 = time.perf_counter()
    f = model.sample(
        num_chains=chains, num_warmup=tune, num_samples=draws, delta=delta, init=[init] * chains
    )
    dt = time.perf_counter() - t0
    post = xr.Dataset({n: (("chain", "draw"), f[n].reshape(draws, chains).T) for n in names})
    return dt, min_bulk_ess(post, names)


def run_twinbayes(spec, patient, seed, chains, tune, draws, target_accept, adaptation="diag"):
    twin = fit(
        spec,
        patient,
        seed=seed,
        chains=chains,
        tune=tune,
        draws=draws,
        target_accept=target_accept,
        adaptation=adaptation,
        posterior_predictive=False,
        ladder=NO_LADDER,  # one run of NUTS, as on the Stan side (the gate's escalation is not sampler speed)
    )
    names = list(spec.parameters)
    return (
        twin.timings["sample"],
        min_bulk_ess(twin.idata["posterior"].to_dataset(), names),
        twin.timings["compile"],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--specs", nargs="+", default=list(STAN))
    ap.add_argument(
        "--target-accept", type=float, default=0.95, help="for both samplers (Stan: delta)"
    )
    ap.add_argument(
        "--adaptation",
        default="diag",
        choices=["diag", "low_rank"],
        help="twinbayes' mass-matrix adaptation (Stan through pystan 3: diag_e only)",
    )
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    import stan

    results = {}
    for name in args.specs:
        spec = load_spec(SPEC.get(name, name))
        file, subject, make_data = DATA[name]
        patient = Patient.from_csv(data_path(file), subject=subject)
        data = make_data(spec, patient)
        t0 = time.perf_counter()
        stan.build(STAN[name], data=data, random_seed=1)
        stan_compile = time.perf_counter() - t0
        names = list(spec.parameters)
        rows = {"twinbayes": [], "stan": []}
        for r in range(args.rounds):
            seed = 1000 + r
            tb_time, tb_ess, tb_compile = run_twinbayes(
                spec,
                patient,
                seed,
                args.chains,
                args.tune,
                args.draws,
                args.target_accept,
                args.adaptation,
            )
            # Stan starts at the prior medians (its default random inits on (-2, 2) reach parameter values where the
            # ODE needs more than max_steps steps, which Stan treats as a fatal error during initialisation)
            init = spec.typical_values()
            st_time, st_ess = run_stan(
                STAN[name],
                data,
                names,
                seed,
                args.chains,
                args.tune,
                args.draws,
                args.target_accept,
                init,
            )
            rows["twinbayes"].append((tb_time, tb_ess))
            rows["stan"].append((st_time, st_ess))
            print(
                f"{name} round {r}: twinbayes {tb_time:.3f} s, ESS {tb_ess:.0f} ({tb_ess / tb_time:.0f}/s); "
                f"Stan {st_time:.3f} s, ESS {st_ess:.0f} ({st_ess / st_time:.0f}/s)",
                file=sys.stderr,
                flush=True,
            )
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
            "twinbayes_adaptation": args.adaptation,
        }
    print(
        f"\n{'model':<22} {'twinbayes ESS/s':>16} {'Stan ESS/s':>11} {'ratio':>6}   (median of {args.rounds} rounds)"
    )
    for name, r in results.items():
        print(
            f"{name:<22} {r['twinbayes_ess_per_s']:>16.0f} {r['stan_ess_per_s']:>11.0f} {r['ratio']:>6.2f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
