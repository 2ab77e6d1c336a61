"""Is the shipped answer calibrated?  P(target) over simulated patients (issue 36, must-show 0).

Two twins are offered, the bundled ``pk_1cmt_iv`` (linear elimination) and ``pk_1cmt_iv_mm``
(Michaelis-Menten), as in the newcomer's case of issue 36: a 1000 mg IV load, then 100 mg q8h; a
few levels (2-8, at random times over the first 96 h); the decision is whether the trough before the
dose at 168 h (day 7) lies in 10-20 mg/L.  Each patient is fitted by both twins with the defaults of
``tb.fit`` (2000 draws x 4 chains, the ladder), compared (``tb.compare``: PSIS-LOO with exact
refits, stacking with Bayesian-bootstrap draws) and simulated (``tb.disagreement``).

Sets of patients (parameters from a population around typical values, not from the priors):

- ``closed``: the truth is one of the twins (alternately the linear and the saturable one);
- ``open``: the truth is a two-compartment model (``pk_2cmt_iv``), which no twin is;
- ``drift``: the truth's clearance rises over time (``CL(t) = CL0 (1 + r t / 24 h)``, as in
  autoinduction), which no twin has (issue 43).

``--levels LO HI`` draws LO to HI levels per patient (default 2-8; issue 43 uses 5-8).  Each record
also holds every twin's warnings (:mod:`twinbayes.fitting.caveats`), its LOO-PIT p-value and whether no
twin with weight fits, so ``--summary`` can say how many confident and wrong answers carried a
visible warning, and how often a warning fired at all (false alarms where the truth is a twin).

The decision is simulated with forward widening (:mod:`twinbayes.decisions.forward`, the shipped default;
``--plain`` turns it off): each record holds the widened headline (``p_ensemble``) and the plain
posterior's (``p_ensemble_plain``), with every twin's forward discrepancy (``forward``), and
``--summary`` gives each method's Brier score against the plain headline, paired.

For every patient the script records P(target) of the stacking ensemble, of equal weights over the
converged twins, and of the twin with the best elpd, and whether the truth (noise-free) met the
target.  ``--summary FILE`` reads such records and prints, per set and method, the Brier score,
a reliability table (mean predicted P against the observed frequency in 5 bins, with the MC error
of the frequency), Spiegelhalter's z, and how often a claim of P >= 0.95 or <= 0.05 was wrong.

Run (about 10-20 s a patient on 2 cores)::

    .venv/bin/python benchmarks/bench_calibration.py --set closed --patients 100 --out cal_closed.jsonl
    .venv/bin/python benchmarks/bench_calibration.py --set open --patients 100 --out cal_open.jsonl
    .venv/bin/python benchmarks/bench_calibration.py --summary cal_closed.jsonl cal_open.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TROUGH_AT = 167.9
LOW, HIGH = 10.0, 20.0
TWINS = ("pk_1cmt_iv", "pk_1cmt_iv_mm")
QUANTILES = (np.arange(200) + 0.5) / 200
"""Where each twin's plain trough draws are recorded: enough to re-score a lognormal widening."""
TRUTHS = {
    "pk_1cmt_iv": {"CL": (1.0, 0.35), "V": (40.0, 0.2), "sigma_add": 0.3, "sigma_prop": 0.1},
    "pk_1cmt_iv_mm": {"Vmax": (20.0, 0.2), "Km": (8.0, 0.3), "V": (40.0, 0.2), "sigma_prop": 0.1},
    "drift": {
        "CL0": (1.0, 0.35),
        "r": (0.15, 0.3),
        "V": (40.0, 0.2),
        "sigma_add": 0.3,
        "sigma_prop": 0.1,
    },
    "pk_2cmt_iv": {
        "CL": (1.0, 0.35),
        "V1": (15.0, 0.2),
        "Q": (3.0, 0.3),
        "V2": (25.0, 0.2),
        "sigma_add": 0.3,
        "sigma_prop": 0.1,
    },
}


DRIFT_SPEC = """
format = 1
[model]
name = "pk_1cmt_iv_induced"
title = "One-compartment PK, IV, clearance rising over time (autoinduction)"
hypothesis = "Clearance rises linearly with time, by a fraction r a day."
references = ["Tang W (2003). The metabolism of carbamazepine: autoinduction. Curr Drug Metab 4:91."]
time_unit = "h"
[parameters.CL0]
description = "clearance at time 0"
unit = "L/h"
prior = { distribution = "lognormal", mu = 0.0, sigma = 1.0 }
[parameters.r]
description = "relative rise of clearance per day"
unit = "1"
prior = { distribution = "lognormal", mu = -2.0, sigma = 1.0 }
[parameters.V]
description = "volume of distribution"
unit = "L"
prior = { distribution = "lognormal", mu = 3.4, sigma = 0.7 }
[parameters.sigma_add]
description = "additive residual SD"
unit = "mg/L"
prior = { distribution = "halfnormal", sigma = 1.0 }
[parameters.sigma_prop]
description = "proportional residual SD"
unit = "1"
prior = { distribution = "halfnormal", sigma = 0.2 }
[states.central]
unit = "mg"
description = "amount of drug in the body"
[dynamics]
linear = false
rhs.central = "-CL0 * (1 + r * t / 24) / V * central"
initial.central = "0"
[routes.iv]
state = "central"
unit = "mg"
[observations.concentration]
expression = "central / V"
unit = "mg/L"
description = "drug concentration in plasma"
error = { model = "combined", additive = "sigma_add", proportional = "sigma_prop" }
"""


def truth_spec(name: str):
    """The spec that simulates a patient: a bundled one, or the drifting clearance above."""
    import twinbayes as tb

    return tb.load_spec("drift.toml", text=DRIFT_SPEC) if name == "drift" else tb.load_spec(name)


def regimen():
    """The dosing of every patient: 1000 mg at 0, then 100 mg every 8 h until 160 h."""
    import twinbayes as tb

    load = tb.Scenario.regimen("load", 1000.0, "iv")
    return load + tb.Scenario.regimen(
        "100 mg q8h", 100.0, "iv", interval=8.0, n_doses=20, start=8.0
    )


def draw_truth(name: str, rng: np.random.Generator) -> dict[str, float]:
    """Parameters of one simulated patient: log-normal around the typical values."""
    return {
        k: float(v if np.isscalar(v) else v[0] * np.exp(v[1] * rng.standard_normal()))
        for k, v in TRUTHS[name].items()
    }


def one_patient(
    kind: str, i: int, seed: int, levels: tuple[int, int] = (2, 8), forward: bool = True
) -> dict:
    """Simulate, fit both twins, compare, decide; the record of one patient."""
    import twinbayes as tb
    from twinbayes.decisions.twin_disagreement import Forward, simulate
    from twinbayes.model.simulate import simulate_patient
    from twinbayes.spec.qoi import ValueAt

    rng = np.random.default_rng([seed, i])
    truth_name = {"closed": TWINS[i % 2], "open": "pk_2cmt_iv", "drift": "drift"}[kind]
    spec = truth_spec(truth_name)
    params = draw_truth(truth_name, rng)
    n_levels = int(rng.integers(levels[0], levels[1] + 1))
    times = np.sort(rng.uniform(1.0, 96.0, n_levels)).round(2)
    dose_t = np.array([0.0] + [8.0 * k for k in range(1, 13)])  # doses given before 96 h
    dose_a = np.array([1000.0] + [100.0] * 12)
    patient = simulate_patient(spec, params, times, {"iv": (dose_t, dose_a)}, seed=seed + i)
    scenario = [regimen()]
    trough = ValueAt(TROUGH_AT, name="day-7 trough")
    target = tb.Target(trough, lower=LOW, upper=HIGH)
    true_value = _true_trough(spec, params, scenario[0])
    t0 = time.perf_counter()
    twins = [tb.fit(tb.load_spec(n), patient, seed=seed + i + k) for k, n in enumerate(TWINS)]
    record = {
        "set": kind,
        "patient": i,
        "truth": truth_name,
        "n_levels": n_levels,
        "true_trough": true_value,
        "meets": bool(LOW <= true_value <= HIGH),
        "converged": [bool(t.converged) for t in twins],
        "warnings": {t.name: t.warnings for t in twins},
    }
    if not any(t.converged for t in twins):
        return {**record, "status": "no twin converged", "seconds": time.perf_counter() - t0}
    comparison = tb.compare(twins, seed=seed + i, include_unconverged=False)
    grid = np.linspace(0.0, 168.0, 169)
    how = dict(qois=[trough], targets=[target], forward=Forward(seed=seed + i) if forward else None)
    simulated = simulate(twins, scenario, grid, **how)
    result = tb.disagreement(
        twins,
        comparison.weights,
        scenario,
        grid,
        seed=seed + i,
        weight_draws=comparison.weight_draws_of("stacking"),
        simulated=simulated,
        **how,
    )
    d = result.data.isel(scenario=0, target=0)
    plain = d.p_meets_plain if forward else d.p_meets
    best = str(comparison.table.twin.values[0])
    return {
        **record,
        "status": "ok",
        "weights": comparison.weights,
        "pseudo_bma": {
            str(n): float(w)
            for n, w in zip(comparison.table.twin.values, comparison.table.pseudo_bma.values)
        },
        "elpd_i": {  # pointwise, so that other weighting rules can be scored from the records
            str(n): [float(v) for v in comparison.pointwise.elpd_i.sel(twin=n).values]
            for n in comparison.table.twin.values
        },
        "elpd_reliable": [bool(v) for v in comparison.table.elpd_reliable.values],
        "loo_pit_p": {
            str(n): float(v)
            for n, v in zip(comparison.table.twin.values, comparison.table.loo_pit_p.values)
        },
        "p_ensemble": float(d.p_meets.sel(source="ensemble")),
        "p_ensemble_mcse": float(d.p_meets_mcse.sel(source="ensemble")),
        "p_equal": float(d.p_meets_equal),
        "p_best_loo": float(d.p_meets.sel(source=best)),
        "p_twins": {n: float(d.p_meets.sel(source=n)) for n in TWINS},
        "p_ensemble_plain": float(plain.sel(source="ensemble")),
        "p_twins_plain": {n: float(plain.sel(source=n)) for n in TWINS},
        "forward": json.loads(result.data.attrs["forward"] or "{}"),
        "trough_quantiles": {  # the plain posterior's, so other widening rules can be scored
            n: [float(v) for v in np.quantile(simulated.plain_values[0][k][:, 0], QUANTILES)]
            for k, n in enumerate(TWINS)
        },
        "range_over_weights": [float(d.p_meets_ensemble_q05), float(d.p_meets_ensemble_q95)],
        "seconds": time.perf_counter() - t0,
    }


def _true_trough(spec, params, scenario) -> float:
    """The noise-free trough of the true model under the scenario."""
    from twinbayes.dynamics.design import design_for
    from twinbayes.model.simulate import simulate_patient
    from twinbayes.model.twin_model import TwinModel

    doses = {r: v[:2] for r, v in scenario.to_doses(spec).items()}  # boluses: times, amounts
    patient = simulate_patient(spec, params, np.array([TROUGH_AT]), doses, seed=0)
    design = design_for(spec, patient)
    mean = TwinModel.of(spec).means(params, design)
    return float(np.ravel(next(iter(mean.values())))[0])


def with_other_weights(record: dict) -> dict:
    """The record with P(target) under weights computed afterwards from its pointwise elpds:
    pseudo-BMA+ and Bayesian stacking (each twin's P mixed by the weights; converged twins only)."""
    from twinbayes.comparison.weights import bayesian_stacking_weights

    if record["status"] != "ok":
        return record
    names = [n for n, ok in zip(TWINS, record["converged"]) if ok]
    p = np.array([record["p_twins"][n] for n in names])
    elpd = np.array([record["elpd_i"][n] for n in names]).T
    w = bayesian_stacking_weights(elpd, seed=record["patient"])[0] if len(names) > 1 else [1.0]
    pbma = np.array([record["pseudo_bma"][n] for n in names])
    offline = {
        f"p_offline_level_{level:g}": widened_at(record, level)
        for level in OFFLINE_LEVELS
        if "trough_quantiles" in record
    }
    return {
        **record,
        "p_bayes_stacking": float(np.dot(w, p)),
        "p_pseudo_bma": float(np.dot(pbma / pbma.sum(), p)),
        **offline,
    }


OFFLINE_LEVELS = (0.5, 0.2, 0.1, 0.05, 0.01)
"""Levels of the widening test re-scored from the records (0.5: every fitted rate applied)."""


def widened_at(record: dict, level: float) -> float:
    """The stacking ensemble's P(target) had the widening test been run at ``level``: each
    twin's plain trough quantiles times a lognormal of log-variance ``fitted * (168 h - t_L)``
    where its likelihood ratio passes (the Brownian widening at one time is exactly that),
    mixed by the stacking weights.  An offline approximation of the shipped computation (the
    pooled draws become 200 quantiles), checked against ``p_ensemble`` at the shipped level."""
    from scipy.stats import norm

    from twinbayes.decisions.forward import widening_threshold

    threshold = widening_threshold(level)
    total = 0.0
    for name, weight in record["weights"].items():
        q = np.maximum(np.array(record["trough_quantiles"][name]), 1e-12)
        found = record["forward"].get("twins", {}).get(name, {})
        tau2 = found.get("fitted") or 0.0
        applied = tau2 if (found.get("lr") or 0.0) > threshold else 0.0
        sd = np.sqrt(applied * max(TROUGH_AT - found.get("since", TROUGH_AT), 0.0))
        if sd == 0.0:
            p = np.mean((q >= LOW) & (q <= HIGH))
        else:
            p = np.mean(
                norm.cdf((np.log(HIGH) - np.log(q)) / sd) - norm.cdf((np.log(LOW) - np.log(q)) / sd)
            )
        total += weight * float(p)
    return total


def _truth_widened(record: dict) -> bool | None:
    """Whether the twin that is the truth was widened (None: the truth is no twin)."""
    found = record.get("forward", {}).get("twins", {}).get(record["truth"])
    return None if found is None else bool(found.get("rate") or 0.0)


def _voting(record: dict) -> list[str]:
    return [n for n, w in record["weights"].items() if w > 0]


def _warned(record: dict) -> bool:
    """Whether the answer box showed a warning of a twin with weight."""
    return any(record.get("warnings", {}).get(n) for n in _voting(record))


def _no_twin_fits(record: dict) -> bool:
    return all(
        any(w.startswith("misfit") for w in record["warnings"].get(n, [])) for n in _voting(record)
    )


def _pit_flag(record: dict) -> bool:
    return any(record.get("loo_pit_p", {}).get(n, 1.0) < 0.05 for n in _voting(record))


METHODS = (
    "p_ensemble",
    "p_ensemble_plain",
    *(f"p_offline_level_{level:g}" for level in OFFLINE_LEVELS),
    "p_bayes_stacking",
    "p_pseudo_bma",
    "p_equal",
    "p_best_loo",
)


def summarise(records: list[dict]) -> str:
    """Brier score, reliability, Spiegelhalter's z and wrong confident claims per set and method."""
    from scipy import stats

    records = [with_other_weights(r) for r in records]
    lines = []
    for kind in sorted({r["set"] for r in records}):
        rows = [r for r in records if r["set"] == kind and r["status"] == "ok"]
        y = np.array([r["meets"] for r in rows], float)
        lines.append(
            f"set {kind}: {len(rows)} patients ({sum(r['set'] == kind for r in records) - len(rows)} "
            f"without a converged twin); target met by {y.mean():.2f}"
        )
        if rows and "warnings" in rows[0]:
            warned = np.array([_warned(r) for r in rows], bool)
            lines.append(
                f"  a warning on the answer (a twin with weight: misfit or prior-data conflict): "
                f"{int(warned.sum())} of {len(rows)} patients ({warned.mean():.0%}); every twin "
                f"with weight misfits: {sum(_no_twin_fits(r) for r in rows)}; LOO-PIT p < 0.05 for "
                f"a twin with weight: {sum(_pit_flag(r) for r in rows)}"
            )
        truth = [w for w in map(_truth_widened, rows) if w is not None]
        if truth:
            lines.append(
                f"  the twin that is the truth widened in {sum(truth)} of {len(truth)} patients"
            )
        for method in (m for m in METHODS if m in rows[0]):
            p = np.clip(np.array([r[method] for r in rows]), 0.0, 1.0)
            brier = float(np.mean((p - y) ** 2))
            z = float(
                np.sum((y - p) * (1 - 2 * p)) / np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
            )
            confident = (p >= 0.95) | (p <= 0.05)
            wrong = confident & ((p >= 0.95) != (y == 1))
            warned = np.array([_warned(r) for r in rows], bool)
            plain = np.clip(np.array([r.get("p_ensemble_plain", np.nan) for r in rows]), 0, 1)
            d = (p - y) ** 2 - (plain - y) ** 2  # paired: the same patients and draws
            vs_plain = (
                f"  Brier - plain {d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(len(d)):.4f}"
                if method != "p_ensemble_plain" and np.all(np.isfinite(plain)) and len(d) > 1
                else ""
            )
            lines.append(
                f"  {method:<16} Brier {brier:.3f}  Spiegelhalter z {z:+.2f} (p {2 * stats.norm.sf(abs(z)):.2g})  "
                f"confident claims {int(confident.sum())}, wrong {int(wrong.sum())}"
                + (
                    f" (with a warning: {int((wrong & warned).sum())})"
                    if "warnings" in rows[0]
                    else ""
                )
                + vs_plain
            )
            edges = np.linspace(0, 1, 6)
            for lo, hi in zip(edges[:-1], edges[1:]):
                inside = (p >= lo) & ((p < hi) | (hi == 1))
                if inside.any():
                    n = int(inside.sum())
                    freq, mean_p = float(y[inside].mean()), float(p[inside].mean())
                    se = np.sqrt(mean_p * (1 - mean_p) / n)
                    lines.append(
                        f"      P in [{lo:.1f}, {hi:.1f}]: n {n:3d}  mean P {mean_p:.2f}  observed "
                        f"{freq:.2f}  (+- {se:.2f} binomial SE of the mean P)"
                    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("closed", "open", "drift"))
    ap.add_argument("--levels", type=int, nargs=2, default=(2, 8), metavar=("LO", "HI"))
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--plain", action="store_true", help="no forward widening (issue 43's 'before')"
    )
    ap.add_argument("--summary", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.summary:
        records = [json.loads(line) for f in args.summary for line in f.read_text().splitlines()]
        print(summarise(records))
        return 0
    if not (args.set and args.out):
        ap.error("--set and --out (or --summary)")
    for i in range(args.first, args.first + args.patients):
        record = one_patient(args.set, i, args.seed, tuple(args.levels), not args.plain)
        with args.out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{args.set} {i}: {record['status']}, {record['seconds']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
