"""Command-line interface: ``twinbayes run``, ``twinbayes specs``, ``twinbayes patient``.

``twinbayes`` with no arguments runs the bundled example: the oral PK twins
fitted to Theophylline subject 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .diagnostics import Gate
from .library import data_path, list_specs
from .patient import Patient, PatientDataError
from .spec.model_spec import SpecError, load_spec

EXAMPLE_SPECS = ["pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twinbayes", description="Bayesian comparison of patient digital twins.")
    p.add_argument("--version", action="version", version=f"twinbayes {__version__}")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="fit twins to one patient (default: the bundled Theophylline example)")
    run.add_argument("--spec", action="append", help="spec file or bundled spec name (repeatable)")
    run.add_argument("--data", help="tidy patient CSV (default: bundled theophylline.csv)")
    run.add_argument("--subject", default=None, help="subject to fit when the file holds several (default for the example: 1)")
    run.add_argument("--seed", type=int, default=20261125)
    run.add_argument("--draws", type=int, default=2000)
    run.add_argument("--tune", type=int, default=1000)
    run.add_argument("--chains", type=int, default=4)
    run.add_argument("--sampler", choices=["nutpie", "pymc"], default=None)
    run.add_argument("--out", default="results/example", help="results folder (default: results/example)")
    run.add_argument("--force", action="store_true", help="replace an existing results folder")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    run.add_argument("--include-unconverged", action="store_true", help="give weight to twins that failed the convergence gate")

    specs = sub.add_parser("specs", help="list, show or check spec files")
    specs_sub = specs.add_subparsers(dest="specs_command", required=True)
    specs_sub.add_parser("list", help="list the bundled specs")
    show = specs_sub.add_parser("show", help="print a spec")
    show.add_argument("spec")
    check = specs_sub.add_parser("check", help="validate specs and check their exact solutions against an ODE solve")
    check.add_argument("spec", nargs="+")

    patient = sub.add_parser("patient", help="check a patient data file")
    patient_sub = patient.add_subparsers(dest="patient_command", required=True)
    pc = patient_sub.add_parser("check", help="validate a tidy CSV and summarise it")
    pc.add_argument("file")
    pc.add_argument("--subject", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in (None, "run"):
            if args.command is None:
                args = _parser().parse_args(["run"])
            return _run(args)
        if args.command == "specs":
            return _specs(args)
        if args.command == "patient":
            return _patient(args)
    except (SpecError, PatientDataError, FileExistsError, FileNotFoundError) as exc:
        print(f"twinbayes: error: {exc}", file=sys.stderr)
        return 2
    return 0  # pragma: no cover


def _run(args) -> int:
    from .fit import fit
    from .results import ResultsFolder

    example = not args.data and not args.spec
    data = Path(args.data) if args.data else data_path("theophylline.csv")
    subject = args.subject if args.subject is not None or args.data else "1"
    patient = Patient.from_csv(data, subject=subject)
    specs = [load_spec(s) for s in (args.spec or EXAMPLE_SPECS)]
    out = ResultsFolder.create(Path(args.out), force=args.force)
    print(f"twinbayes {__version__}: {len(specs)} twin(s) of patient {patient.id!r} from {data}")
    twins = []
    try:
        for i, spec in enumerate(specs, 1):
            print(f"[{i}/{len(specs)}] fitting {spec.name} ({spec.title}) ...", flush=True)
            t0 = time.perf_counter()
            twin = fit(spec, patient, seed=args.seed + i, draws=args.draws, tune=args.tune, chains=args.chains, sampler=args.sampler, progress=not args.quiet)
            print(f"      {time.perf_counter() - t0:.1f} s; {twin.diagnostics}")
            if twin.excluded:
                print(f"      left out {len(twin.excluded)} pre-dose observation(s) that the twin predicts as 0 by construction")
            twins.append(twin)
            out.write_twin(twin)
        print()
        print(_summary_table(twins))
        if not args.no_figures:
            from .plots import plot_twin_checks

            for twin in twins:
                plot_twin_checks(twin, out.figure_path(f"{twin.name}_checks"))
        comparison = _compare(twins, out, args) if len(twins) > 1 else None
        if comparison is not None and example:
            _example_scenarios(twins, comparison, out, args)
        out.finish(twins, command=sys.argv)
    except BaseException:
        out.abort()
        raise
    failed = [t.name for t in twins if not t.converged]
    print(f"\nresults written to {out.path}")
    if failed:
        print(f"warning: {len(failed)} twin(s) failed the convergence gate: {', '.join(failed)} (see diagnostics above)")
    return 0


def _compare(twins, out, args) -> None:
    from .compare import compare

    print("\ncomparing the twins out of sample (PSIS-LOO; exact refits where Pareto k is high) ...", flush=True)
    try:
        comparison = compare(twins, seed=args.seed, include_unconverged=args.include_unconverged)
    except ValueError as exc:  # e.g. no twin passed its gate
        print(f"comparison skipped: {exc}")
        return
    print(comparison)
    out.write_comparison(comparison)
    if not args.no_figures:
        from .plots import plot_average

        plot_average(twins, comparison.weights, out.figure_path("average"))
    return comparison


def _example_scenarios(twins, comparison, out, args) -> None:
    """The example's dosing question: which regimen keeps day 3 within 10-20 mg/L?"""
    from .disagreement import disagreement
    from .qoi import AUC, Cmax, StaysInRange, Target, TimeInRange, ValueAt
    from .scenarios import Scenario

    day3 = (48.0, 72.0)
    scenarios = [
        Scenario.regimen("320 mg q12h", 320, "oral", interval=12, n_doses=6),
        Scenario.regimen("160 mg q6h", 160, "oral", interval=6, n_doses=12),
    ]
    stays = StaysInRange(10.0, 20.0, day3, name="stays in 10-20 mg/L on day 3")
    qois = [Cmax(day3, name="Cmax day 3"), ValueAt(72.0, name="trough at 72 h"), AUC(day3, name="AUC day 3"), TimeInRange(10.0, 20.0, day3, name="hours in 10-20 mg/L on day 3")]
    print("\nsimulating two regimens under every twin and the ensemble ...", flush=True)
    result = disagreement(twins, comparison.weights, scenarios, np.linspace(0.0, 72.0, 289), qois=qois, targets=[Target(stays, lower=1.0, name=stays.name)], seed=args.seed)
    print(result)
    out.write_disagreement(result)
    if not args.no_figures:
        from .plots import plot_decision_table, plot_disagreement_over_time, plot_scenario_fans

        plot_scenario_fans(result, out.figure_path("scenario_fans"), band=(10.0, 20.0))
        plot_disagreement_over_time(result, out.figure_path("disagreement_over_time"))
        plot_decision_table(result, path=out.figure_path("decision_table"))


def _summary_table(twins) -> str:
    lines = [f"{'twin':<20} {'parameter':<12} {'median':>10} {'2.5%':>10} {'97.5%':>10} {'R-hat':>7} {'ESS':>6}  gate"]
    for tw in twins:
        post = tw.idata["posterior"]
        for j, p in enumerate(tw.spec.parameters):
            q = np.quantile(post[p].values, [0.5, 0.025, 0.975])
            row = tw.diagnostics.table.sel(parameter=p)
            gate = ("passed" if tw.converged else "FAILED") if j == 0 else ""
            name = tw.name if j == 0 else ""
            lines.append(f"{name:<20} {p:<12} {q[0]:>10.4g} {q[1]:>10.4g} {q[2]:>10.4g} {float(row.rhat):>7.3f} {float(row.ess_bulk):>6.0f}  {gate}")
    return "\n".join(lines)


def _specs(args) -> int:
    if args.specs_command == "list":
        for name in list_specs():
            spec = load_spec(name)
            print(f"{name:<22} {spec.title}")
        return 0
    if args.specs_command == "show":
        print(load_spec(args.spec).text)
        return 0
    from .checks import check_exact_solution

    worst = 0.0
    for s in args.spec:
        spec = load_spec(s)
        err = check_exact_solution(spec)
        worst = max(worst, err)
        print(f"{spec.source}: valid; exact solution vs ODE solve: max relative error {err:.1e}")
    return 0 if worst < 1e-6 else 1


def _patient(args) -> int:
    p = Patient.from_csv(args.file, subject=args.subject)
    print(f"{args.file}: valid; patient {p.id!r}, time unit {p.time_unit}")
    for name in p.observation_names:
        sel = p.data["obs_name"].values == name
        t = p.data["obs_time"].values[sel]
        print(f"  observations {name}: {sel.sum()} from t={t.min():g} to t={t.max():g} ({', '.join(sorted(set(p.data['obs_unit'].values[sel])))})")
    for route in p.routes:
        sel = p.data["dose_route"].values == route
        print(f"  doses {route}: {sel.sum()} (total {p.data['dose_amount'].values[sel].sum():g} {p.data['dose_unit'].values[sel][0]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
