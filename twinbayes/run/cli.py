"""Command-line interface.

``twinbayes`` alone runs the bundled example study (three oral PK twins of
Theophylline subject 1 and a dosing question); ``twinbayes run STUDY`` runs a
study file; ``twinbayes update RESULTS NEW.csv`` adds new observations to a
results folder and runs its study again; ``twinbayes specs``, ``twinbayes
patient`` and ``twinbayes report`` check inputs and rebuild reports.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import faulthandler
import logging
import os
import sys
from pathlib import Path

from .. import __version__
from ..error import TwinbayesError
from ..fitting.compile.import_speed import patch_lazy_loader
from ..fitting.ladder import NO_LADDER
from ..inputs.library import list_specs
from ..inputs.patient import Patient, PatientDataError
from ..spec.model_spec import load_spec


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


EXIT_CODES = """exit codes:
  0  every twin passed its convergence gate; comparison and scenarios ran
  1  twinbayes specs check: a solution did not match the reference solve; validate sbc: ranks not uniform
  2  bad input (spec, study or patient file; results folder exists without --force)
  3  some twin failed its gate after the escalation ladder (excluded, or included by opt-in)
  4  no twin passed its gate
  5  the comparison or the scenario study was skipped (reason printed and in summary.json)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinbayes",
        description="Bayesian comparison of patient digital twins.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"twinbayes {__version__}")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser(
        "run",
        help="run a study file (default: the bundled example study)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("study", nargs="?", help="study.toml (default: the bundled example)")
    run.add_argument("--out", help="results folder (default: results/<study name>)")
    run.add_argument("--force", action="store_true", help="replace an existing results folder")
    _run_options(run)

    update = sub.add_parser(
        "update",
        help="add new observations to a results folder and run its study again",
        description="Check the new observations against the folder's data so far (later than the last "
        "observation, no duplicates, convertible units, the same patient), refit every twin, recompute "
        "the comparison and the disagreement, append to history.json and replace the folder atomically. "
        "A refused update leaves the folder as it was.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    update.add_argument("results", help="a results folder written by twinbayes run")
    update.add_argument(
        "data", help="tidy CSV with the new rows (same columns as the patient file)"
    )
    update.add_argument(
        "--subject", default=None, help="which subject, when the file holds several"
    )
    _run_options(update)

    report = sub.add_parser("report", help="rebuild report.html of a results folder")
    report.add_argument("results")

    specs = sub.add_parser("specs", help="list, show or check spec files")
    specs_sub = specs.add_subparsers(dest="specs_command", required=True)
    specs_sub.add_parser("list", help="list the bundled specs")
    show = specs_sub.add_parser("show", help="print a spec")
    show.add_argument("spec")
    check = specs_sub.add_parser(
        "check", help="validate specs; check exact solutions / the ODE engine against solve_ivp"
    )
    check.add_argument("spec", nargs="+")
    check.add_argument(
        "--patient",
        help="tidy CSV supplying times and forcing inputs (needed for specs with [inputs])",
    )
    check.add_argument("--subject", default=None)

    validate = sub.add_parser(
        "validate", help="method validation: simulation-based calibration, model recovery"
    )
    validate_sub = validate.add_subparsers(dest="validate_command", required=True)
    sbc = validate_sub.add_parser(
        "sbc",
        help="simulation-based calibration of a spec (Talts et al. 2018) on a patient's design",
    )
    sbc.add_argument("spec")
    rec = validate_sub.add_parser(
        "recovery", help="simulate from each spec, fit all, count which the comparison prefers"
    )
    rec.add_argument("spec", nargs="+")
    for v in (sbc, rec):
        v.add_argument(
            "--patient", required=True, help="tidy CSV whose times and doses are the design"
        )
        v.add_argument("--subject", default=None)
        v.add_argument("--sims", type=_positive_int, default=100 if v is sbc else 20)
        v.add_argument("--seed", type=int, default=0)
        v.add_argument(
            "--draws", type=_positive_int, default=1000, help="draws per chain of each fit"
        )
        v.add_argument("--out", help="folder for the results (default: results/validate-<what>)")
        v.add_argument("--force", action="store_true", help="replace an existing results folder")
    sbc.add_argument("--ranks", type=_positive_int, default=99, help="L: thinned draws per rank")

    patient = sub.add_parser("patient", help="check a patient data file")
    patient_sub = patient.add_subparsers(dest="patient_command", required=True)
    pc = patient_sub.add_parser(
        "check", help="validate a tidy CSV or a FHIR R4 bundle (.json) and summarise it"
    )
    pc.add_argument("file", nargs="?")
    pc.add_argument("--fhir", help="a FHIR R4 Bundle (JSON) instead of a CSV file")
    pc.add_argument("--subject", default=None)
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``update``: output and sampler overrides."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--seed", type=int, help="override the study's seed")
    p.add_argument("--draws", type=_positive_int, help="override draws per chain")
    p.add_argument("--tune", type=_positive_int, help="override warm-up iterations per chain")
    p.add_argument("--chains", type=_positive_int, help="override the number of chains")
    p.add_argument(
        "--no-ladder",
        action="store_true",
        help="do not refit twins that fail the gate with escalated sampler settings",
    )
    p.add_argument(
        "--include-unconverged",
        action="store_true",
        help="give weight to twins that failed the convergence gate",
    )


def console() -> None:
    """The ``twinbayes`` command: :func:`main`, then exit without the interpreter's last sweep.

    After a study, the process holds many small objects (PyTensor graphs, Numba functions)
    whose final garbage collection at interpreter shutdown takes 1-1.5 s that nobody needs: the
    results are written and closed.  An exit handler registered first (so it runs after every
    handler a library registers later) flushes the standard streams and ends the process with
    the exit code.  ``main`` called from Python is unaffected.
    """
    state = {"code": 1}  # an uncaught exception exits with 1, as Python would

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
                pass
        os._exit(state["code"])

    atexit.register(leave)
    patch_lazy_loader()  # this process is twinbayes's own: before anything imports ArviZ
    if (sys.argv[1:2] or ["run"])[0] in ("run", "update"):
        from ..fitting.compile.import_speed import import_and_freeze

        import_and_freeze()
    try:
        state["code"] = main()
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        state["code"] = 1
    except KeyboardInterrupt:  # Ctrl-C: a results folder being written was left as it was
        print("\ntwinbayes: interrupted; no results folder was changed", file=sys.stderr)
        state["code"] = 130  # 128 + SIGINT, as shells report it
    sys.exit(state["code"])


def main(argv: list[str] | None = None) -> int:
    # A native crash (a segfault in compiled sampler code) still prints the Python stack, which
    # names the twin being fitted; known causes (no finite initial point) are caught before sampling.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv or ["run"])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("twinbayes").setLevel(logging.ERROR)  # the CLI prints gate verdicts itself
    try:
        if args.command == "run":
            return _run(args, argv)
        if args.command == "update":
            return _update(args, argv)
        if args.command == "report":
            from ..output.report import write_report

            print(write_report(args.results))
            return 0
        if args.command == "specs":
            return _specs(args)
        if args.command == "patient":
            return _patient(args)
        if args.command == "validate":
            return _validate(args)
    except (TwinbayesError, FileExistsError, FileNotFoundError) as exc:
        print(f"twinbayes: error: {exc}", file=sys.stderr)
        return 2
    return 0  # pragma: no cover


def _run(args, argv) -> int:
    from .pipeline import run_study
    from .study import example_study_path, load_study

    study = _with_overrides(load_study(args.study or example_study_path()), args)
    out = Path(args.out) if args.out else Path("results") / study.name
    result = run_study(
        study,
        out,
        force=args.force,
        progress=not args.quiet,
        figures=not args.no_figures,
        command=["twinbayes", *argv],
    )
    return _finish(result)


def _update(args, argv) -> int:
    from .updates import update_results

    result = update_results(
        args.results,
        args.data,
        subject=args.subject,
        progress=not args.quiet,
        figures=not args.no_figures,
        command=["twinbayes", *argv],
        adjust=lambda study: _with_overrides(study, args),
    )
    return _finish(result)


def _validate(args) -> int:
    """``validate sbc`` / ``validate recovery``: run the study, print it, write NetCDF, text and a figure."""
    from ..output.netcdf import write_netcdf
    from ..output.plots import plot_recovery, plot_sbc
    from ..output.results import ResultsFolder
    from .validation import recovery, recovery_table, sbc

    patient = Patient.from_file(args.patient, subject=args.subject)
    specs = (
        [load_spec(s) for s in args.spec]
        if args.validate_command == "recovery"
        else [load_spec(args.spec)]
    )
    what = "sbc" if args.validate_command == "sbc" else "recovery"
    out = Path(args.out) if args.out else Path("results") / f"validate-{what}-{specs[0].name}"
    folder = ResultsFolder.create(out, force=args.force)
    try:
        settings = dict(seed=args.seed, draws=args.draws, progress=_progress_line(what))
        if what == "sbc":
            result = sbc(specs[0], patient, n_sims=args.sims, n_ranks=args.ranks, **settings)
            text, data = str(result), result.to_dataset()
            plot_sbc(result, folder.figure_path("sbc"))
        else:
            data = recovery(specs, patient, n_sims=args.sims, **settings)
            text = recovery_table(data)
            plot_recovery(data, folder.figure_path("recovery"))
        print(text)
        with folder.writing():
            write_netcdf(data, folder.staging / f"{what}.nc")
            (folder.staging / f"{what}.txt").write_text(text + "\n")
            folder.commit()
    except BaseException:
        folder.abort()
        raise
    print(f"written to {out}")
    return 0 if what == "recovery" or result.calibrated else 1


def _progress_line(what: str):
    """A one-line progress counter on stderr (``validate`` studies fit hundreds of times)."""

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{what}: {done}/{total} simulations", end=end, file=sys.stderr, flush=True)

    return show


def _with_overrides(study, args):
    """The study with the command line's sampler, seed, ladder and inclusion overrides."""
    sampler = dict(study.sampler)
    for key in ("draws", "tune", "chains"):
        if getattr(args, key) is not None:
            sampler[key] = getattr(args, key)
    return dataclasses.replace(
        study,
        ladder=NO_LADDER if args.no_ladder else study.ladder,
        seed=study.seed if args.seed is None else args.seed,
        sampler=sampler,
        comparison={
            **study.comparison,
            "include_unconverged": study.comparison["include_unconverged"]
            or args.include_unconverged,
        },
    )


def _finish(result) -> int:
    """Warn about twins that failed their gate; the run's exit code."""
    failed = [t.name for t in result.twins if not t.converged]
    if failed:
        print(
            f"warning: {len(failed)} twin(s) failed the convergence gate: {', '.join(failed)} (see the diagnostics above)"
        )
    return int(result.outcome)


def _specs(args) -> int:
    if args.specs_command == "list":
        for name in list_specs():
            print(f"{name:<22} {load_spec(name).title}")
        return 0
    if args.specs_command == "show":
        print(load_spec(args.spec).text)
        return 0
    from ..dynamics.design import design_for
    from ..model.checks import check_spec

    patient = Patient.from_file(args.patient, subject=args.subject) if args.patient else None
    failed = False
    for s in args.spec:
        spec = load_spec(s)
        if spec.inputs and patient is None:
            print(
                f"twinbayes: error: {spec.source}: driven by input(s) {list(spec.inputs)}; add --patient DATA.csv that supplies them",
                file=sys.stderr,
            )
            return 2
        what, err, tol = check_spec(spec, design_for(spec, patient) if patient else None)
        failed |= not err < tol
        print(f"{spec.source}: valid; {what}: max relative error {err:.1e} (tolerance {tol:g})")
    return 1 if failed else 0


def _patient(args) -> int:
    if args.fhir:
        from ..inputs.fhir import read_bundle
        from ..inputs.patient import resolve_data_path

        args.file = args.fhir
        p = read_bundle(resolve_data_path(args.fhir))
    elif args.file:
        p = Patient.from_file(args.file, subject=args.subject)
    else:
        raise PatientDataError("patient check needs a FILE or --fhir BUNDLE")
    who = repr(p.label) if p.id else "(one patient: the file has no subject column)"
    print(f"{args.file}: valid; patient {who}, time unit {p.time_unit}")
    for name in p.observation_names:
        sel = p.data["obs_name"].values == name
        t = p.data["obs_time"].values[sel]
        print(
            f"  observations {name}: {sel.sum()} from t={t.min():g} to t={t.max():g} ({', '.join(sorted(set(p.data['obs_unit'].values[sel])))})"
        )
    for route in p.routes:
        sel = p.data["dose_route"].values == route
        print(
            f"  doses {route}: {sel.sum()} (total {p.data['dose_amount'].values[sel].sum():g} {p.data['dose_unit'].values[sel][0]})"
        )
    for name in p.input_names:
        sel = p.data["input_name"].values == name
        t = p.data["input_time"].values[sel]
        print(f"  input {name}: {sel.sum()} values from t={t.min():g} to t={t.max():g}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    console()
