"""Running a study: fit every twin, compare, simulate scenarios, write the results folder."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..comparison import Comparison, compare
from ..comparison.scoring import Scoring
from ..decisions.twin_disagreement import (
    Disagreement,
    Forward,
    Simulated,
    TwinScenarios,
    disagreement,
    simulate,
    twin_simulation,
)
from ..dynamics.design import describe_excluded, design_for
from ..dynamics.ode import OdeError
from ..fitting.twin import FailedFit, FitError, Twin, default_sampler, fit
from ..inputs.patient import Patient
from ..output.history import history_entry
from ..output.results import ResultsFolder
from ..spec.model_spec import load_spec
from .aside import Aside
from .compile_ahead import CompileAhead
from .score_ahead import Ahead, ScoreAhead
from .study import Study

__all__ = ["StudyResult", "Outcome", "run_study", "fit_for_study"]


class Outcome(IntEnum):
    """How a study run ended; its value is the exit code of ``twinbayes run``.

    Precedence when several apply: ``NO_TWIN_CONVERGED``, then ``STEP_SKIPPED``, then ``TWIN_FAILED_GATE``.
    """

    OK = 0
    """Every twin passed its gate; the comparison and the scenarios (where asked for) ran."""
    TWIN_FAILED_GATE = 3
    """At least one twin failed its gate after the escalation ladder (excluded, or included only by opt-in)."""
    NO_TWIN_CONVERGED = 4
    """No twin passed its gate: nothing downstream is to be trusted."""
    STEP_SKIPPED = 5
    """The comparison or the scenario study was skipped (the reason is printed and in ``summary.json``)."""

    @classmethod
    def of(cls, twins: list[Twin], skipped: list[str]) -> Outcome:
        if not any(t.converged for t in twins):
            return cls.NO_TWIN_CONVERGED
        if skipped:
            return cls.STEP_SKIPPED
        if not all(t.converged for t in twins):
            return cls.TWIN_FAILED_GATE
        return cls.OK


@dataclass
class StudyResult:
    """What a study run produced (also written to ``path``)."""

    study: Study
    twins: list[Twin]
    comparison: Comparison | None
    disagreement: Disagreement | None
    path: Path | None
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage: fits (and their compile/sample parts), compare, scenarios, write."""

    @property
    def outcome(self) -> Outcome:
        """How the run ended (the CLI's exit code)."""
        return Outcome.of(self.twins, self.skipped)


class Stopwatch:
    """Wall-clock seconds per named stage of a run (``with watch("compare"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def add_fit_parts(self, twins: list) -> None:
        """Compile and sample seconds summed over the twins (from each fit's own timings)."""
        for part in ("compile", "sample"):
            self.seconds[f"fits: {part}"] = sum(
                getattr(t, "timings", {}).get(part, 0.0) for t in twins
            )

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


@dataclass
class Run:
    """One run of a study: what it was asked, where it writes, what it skipped; each stage takes it.

    Attributes
    ----------
    study : Study
    folder : ResultsFolder or None
        Where the run writes (``None``: nothing is written).
    progress, figures, quiet : bool
        Progress bars, figures, console output.
    command : list of str or None
        The command line recorded in ``provenance.json`` (default ``sys.argv``).
    watch : Stopwatch
        Seconds per stage.
    skipped : list of str
        What the run could not do, and why (the outcome's reasons).
    """

    study: Study
    folder: ResultsFolder | None = None
    progress: bool = True
    figures: bool = True
    quiet: bool = False
    command: list[str] | None = None
    watch: Stopwatch = field(default_factory=Stopwatch)
    skipped: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        _say(message, self.quiet)


class Found(NamedTuple):
    """What a run found, as it is written: twins (fitted or failed), comparison, scenarios,
    weights and how the run ended."""

    twins: list
    comparison: Comparison | None
    result: Disagreement | None
    weights: dict[str, float] | None
    outcome: Outcome

    @property
    def fitted(self) -> list[Twin]:
        return [t for t in self.twins if isinstance(t, Twin)]  # a FailedFit has no posterior


def run_study(
    study: Study,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    figures: bool = True,
    quiet: bool = False,
    command: list[str] | None = None,
    patient: Patient | None = None,
    history: list[dict] | None = None,
) -> StudyResult:
    """Run ``study`` and (when ``out`` is given) write its results folder atomically.

    Every twin is fitted with seed ``study.seed + i`` (i = 1, 2, ...); the
    comparison and the scenario simulation use ``study.seed``.  A twin that
    fails its convergence gate after the escalation ladder is reported and,
    unless the study opts in, gets no weight.  ``StudyResult.outcome`` says
    how the run ended.  ``patient`` replaces the study's data file (an update,
    :func:`~twinbayes.run.updates.update_results`); the run is appended to ``history``
    (earlier runs) in the folder's ``history.json``.
    """
    folder = ResultsFolder.create(Path(out), force=force) if out is not None else None
    run = Run(study, folder, progress, figures, quiet, command)
    try:
        patient, specs = _prepare(run, patient)
        found = _answer(run, patient, specs)
        if folder:
            with folder.writing():
                _write_history(run, patient, found, history)
                _write(run, found)
            run.say(f"results written to {folder.path} (open {folder.path / 'report.html'})")
        run.say(f"time: {run.watch}")
        return StudyResult(
            study,
            found.twins,
            found.comparison,
            found.result,
            folder.path if folder else None,
            run.skipped,
            run.watch.seconds,
        )
    except BaseException:
        if folder:
            folder.abort()
        raise


def _answer(run: Run, patient: Patient, specs: list) -> Found:
    """Fit every twin (scoring and simulating each while the next fits), compare, weigh, decide."""
    watch, study = run.watch, run.study
    with (
        ScoreAhead(_scoring(study, len(specs))) as ahead,
        Ahead(_simulation(study), name="twinbayes-simulate") as simulating,
    ):
        with watch("fits"):
            twins = _fit_all(run, specs, patient, (ahead, simulating))
        fitted = [t for t in twins if isinstance(t, Twin)]
        watch.add_fit_parts(fitted)
        run.say("\n" + summary_table(fitted) + "\n")
        if run.folder and run.figures:  # while the last twin's scenarios and refits run
            with watch("figures"), run.folder.writing():
                _twin_figures(run.folder, fitted)
        with watch("scenarios"):
            simulated = _simulate(run, fitted, simulating)
        with watch("compare"):
            comparison = _compare(run, fitted, ahead)
    weights = _weights(fitted, comparison, study)
    with watch("scenarios"):
        result = _scenarios(run, fitted, weights, comparison, simulated)
    if _no_twin_fits(twins, weights):
        run.say(
            "warning: no twin fits this patient's data (every twin with weight failed a "
            "misfit check): no twin supports the answer"
        )
    outcome = Outcome.of(twins, run.skipped)
    if outcome is not Outcome.OK:
        run.say(
            f"outcome: {outcome.name} (exit code {outcome.value}); "
            + "; ".join(run.skipped or _gate_failures(twins))
        )
    return Found(twins, comparison, result, weights, outcome)


def _prepare(run: Run, patient: Patient | None) -> tuple[Patient, list]:
    """The patient and the specs, with everything checked that can be checked before any fit."""
    study = run.study
    if patient is None:
        patient = study.load_patient()
    if study.keep_identifiers:
        patient = patient.keeping_identifiers()
    specs = [load_spec(p) for p in study.specs]
    _check_distinct_names(specs)
    check_scenarios(study, specs)
    _check_observable(study, specs)
    for spec in specs:
        design = design_for(spec, patient)  # observables, routes and covariates every twin needs
        _check_scenario_forcing(study, spec, design)
    run.say(
        f"study {study.name}: {len(specs)} twin(s) of patient {patient.label!r} ({study.data.name})"
    )
    return patient, specs


def _check_distinct_names(specs) -> None:
    """Two twins with one ``model.name`` would overwrite each other's results."""
    from ..spec.model_spec import SpecError

    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise SpecError(
                "twins.specs",
                f"{seen[spec.name]} and {spec.source} are both named {spec.name!r}; give each twin its own model.name",
            )
        seen[spec.name] = spec.source


def _check_observable(study: Study, specs: list) -> None:
    """``[predictions] observable`` must be an observable of every twin."""
    from ..spec.model_spec import SpecError

    for spec in specs:
        if study.observable is not None and study.observable not in spec.observations:
            raise SpecError(
                "predictions.observable",
                f"spec {spec.name!r} has no observable {study.observable!r} (it has "
                f"{', '.join(spec.observations)}); name one every twin models",
                study.source or None,
            )


def check_scenarios(study: Study, specs: list) -> None:
    """Every scenario must be simulable under every twin: routes and units, before any fit.

    Raises
    ------
    SpecError
        Naming the study file, the scenario and the routes each twin models.
    """
    from ..inputs.units import UnitError
    from ..spec.model_spec import SpecError

    for i, scenario in enumerate(study.scenarios):
        for spec in specs:
            try:
                scenario.to_doses(spec)
            except (ValueError, UnitError) as exc:
                modelled = "; ".join(
                    f"{s.name}: {', '.join(f'{r} ({s.routes[r].unit})' for r in s.routes) or 'none'}"
                    for s in specs
                )
                raise SpecError(
                    f"scenarios[{i}]",
                    f"{exc}. The twins model these routes (unit): {modelled}. "
                    "Use a route every twin models, or remove that twin from [twins] specs",
                    study.source or None,
                ) from None
            try:
                scenario.to_inputs(spec, None)
            except (ValueError, UnitError) as exc:
                raise SpecError(
                    f"scenarios[{i}].series",
                    f"{exc}. A scenario may change only series that drive every twin "
                    "(or remove that twin from [twins] specs)",
                    study.source or None,
                ) from None


def _check_scenario_forcing(study: Study, spec, design) -> None:
    """Under every scenario, a forced twin's inputs must span the predictions (before any fit)."""
    from ..fitting.predictive import check_forcing_covers
    from ..spec.model_spec import SpecError

    if not study.scenarios or not spec.inputs:
        return
    qoi_times = [x for q in study.qois for x in q.required_times()]
    t_end = float(np.max(np.concatenate([study.times, qoi_times])))
    for i, scenario in enumerate(study.scenarios):
        under = replace(design, inputs=scenario.to_inputs(spec, design.inputs))
        try:
            check_forcing_covers(under, t_end, spec.name)
        except ValueError as exc:
            raise SpecError(
                f"scenarios[{i}] ({scenario.name})", str(exc), study.source or None
            ) from None


def _fit_all(run: Run, specs: list, patient: Patient, aheads) -> list[Twin | FailedFit]:
    """Every twin in turn, the later ones compiled ahead in a second process (nutpie only),
    each fitted twin handed to each of ``aheads`` (:class:`Ahead`: its score, its scenarios)."""
    nutpie = (run.study.sampler.get("sampler") or default_sampler()) == "nutpie"
    twins = []
    with CompileAhead(list(run.study.specs), patient, enabled=nutpie) as compiling:
        for i, spec in enumerate(specs, 1):
            compiling.wait(i)
            twins.append(_fit_one(run, i, len(specs), spec, patient))
            if isinstance(twins[-1], Twin):
                for ahead in aheads:
                    ahead.submit(twins[-1])
    return twins


def fit_for_study(study: Study, i: int, spec, patient: Patient, progress: bool = False) -> Twin:
    """Twin ``i`` (1-based) of ``study`` fitted as a run fits it: seed ``study.seed + i``, the
    study's gate, ladder and sampler settings (raises :class:`FitError` as :func:`fit` does)."""
    return fit(
        spec,
        patient,
        seed=study.seed + i,
        gate=study.gate,
        ladder=study.ladder,
        progress=progress,
        **study.sampler,
    )


def _fit_one(run: Run, i: int, n: int, spec, patient: Patient) -> Twin | FailedFit:
    """Fit twin ``i`` of ``n`` (seed ``study.seed + i``), say how it went, write it.

    A fit that cannot run at all (no finite initial point, a failing solver or
    sampler) is a :class:`FailedFit` with its cause: reported, given no weight,
    and the other twins go on.
    """
    run.say(f"[{i}/{n}] fitting {spec.name} ({spec.title}) ...")
    t0 = time.perf_counter()
    try:
        twin = fit_for_study(run.study, i, spec, patient, run.progress)
    except (FitError, OdeError) as exc:
        run.say(
            f"      FAILED after {time.perf_counter() - t0:.1f} s: {exc}; this twin gets no weight"
        )
        return FailedFit(spec, patient, str(exc))
    run.say(f"      {time.perf_counter() - t0:.1f} s; {twin.diagnostics}")
    if twin.sensitivity is not None:
        run.say(f"      {twin.sensitivity}")
    for line in twin.warnings:
        run.say(f"      warning: {line}")
    _say_ladder(twin, run.quiet)
    if twin.excluded:
        run.say(f"      {describe_excluded(twin.spec, twin.excluded)}")
    if run.folder:
        with run.folder.writing():
            run.folder.write_twin(twin, background=True)
    return twin


def _gate_failures(twins: list[Twin]) -> list[str]:
    return [f"{t.name} failed its gate" for t in twins if not t.converged]


def _comparison_settings(study: Study) -> dict:
    """:func:`~twinbayes.comparison.compare`'s keyword arguments from the study's ``[comparison]``."""
    c = study.comparison
    return dict(
        seed=study.seed,
        include_unconverged=c["include_unconverged"],
        refit=c["refits"],
        max_refits=c["max_refits"],
        kfold_k=c["kfold_k"],
        bma=c["bma"],
        bma_method=c.get("bma_method", "smc"),
        cv=c["cv"],
        lfo_min_points=c["lfo_min_points"],
        lfo_horizon=c["lfo_horizon"],
        lfo_method=c["lfo_method"],
    )


def _scoring(study: Study, n_twins: int) -> Scoring | None:
    """How the comparison will score each twin (``None`` when there is no comparison)."""
    return Scoring.of(_comparison_settings(study)) if n_twins >= 2 else None


def _compare(run: Run, twins: list[Twin], ahead: ScoreAhead) -> Comparison | None:
    """The comparison of two or more twins (``None``, with the reason in ``skipped``, when it cannot run),
    with the scores ``ahead`` computed while the twins were fitting."""
    if len(twins) < 2:
        return None
    study, c = run.study, run.study.comparison
    run.say(
        "comparing the twins out of sample "
        + (
            "(PSIS-LOO; exact refits where Pareto k is high) ..."
            if c["cv"] == "loo" and c["refits"]
            else "(PSIS-LOO, no refits: high Pareto k is flagged) ..."
            if c["cv"] == "loo"
            else f"(leave-future-out, {c['lfo_horizon']}-step forecasts from {c['lfo_min_points']} time points) ..."
        )
    )
    try:
        comparison = compare(twins, **_comparison_settings(study), scores=ahead.scores(twins))
    except ValueError as exc:  # e.g. no twin passed its gate
        run.skipped.append(f"comparison skipped: {exc}")
        run.say(run.skipped[-1])
        return None
    run.say(str(comparison))
    return comparison


def _simulation(study: Study) -> Callable[[Twin], TwinScenarios] | None:
    """A fitted twin's scenarios as the study simulates them (``None``: the study has none)."""
    return twin_simulation(**_scenario_study(study)) if study.scenarios else None


def _simulate(run: Run, twins: list[Twin], ahead: Ahead | None = None) -> Simulated | None:
    """The scenarios under every twin (``None`` when there are none, or no twin can get weight),
    from each twin's simulated ``ahead`` while the next ones were fitted (default: here)."""
    study = run.study
    may_weigh = study.comparison["include_unconverged"] or any(t.converged for t in twins)
    if not study.scenarios or not may_weigh:
        return None
    run.say(f"simulating {len(study.scenarios)} scenario(s) under every twin ...")
    per_twin = ahead.results(twins) if ahead is not None else None
    return simulate(twins, **_scenario_study(study), per_twin=per_twin)


def _scenario_study(study: Study) -> dict:
    """The study's scenarios, prediction times, observable, QoIs and targets, as keywords."""
    return dict(
        scenarios=study.scenarios,
        times=study.times,
        observable=study.observable,
        qois=study.qois,
        targets=study.targets,
        forward=None
        if study.forward_min_points is None
        else Forward(study.forward_min_points, study.seed, study.forward_level),
    )


def _scenarios(run: Run, twins, weights, comparison, simulated) -> Disagreement | None:
    """The scenario study under every twin and the ensemble (``None`` when none was asked for or
    possible), from the twins' ``simulated`` scenarios (``None``: simulated here)."""
    study = run.study
    if not study.scenarios:
        return None
    if not weights:
        run.skipped.append(
            "scenarios skipped: no twin has ensemble weight (none passed its convergence gate)"
        )
        run.say(run.skipped[-1])
        return None
    result = disagreement(
        twins,
        weights,
        **_scenario_study(study),
        seed=study.seed,
        weight_draws=None
        if comparison is None
        else comparison.weight_draws_of(study.comparison["weights"]),
        simulated=simulated,
    )
    run.say(str(result))
    return result


def _no_twin_fits(twins, weights: dict[str, float] | None) -> bool:
    """Whether every twin with weight (every fitted twin without weights) raised a misfit warning."""
    voting = [
        t for t in twins if isinstance(t, Twin) and (weights is None or weights.get(t.name, 0) > 0)
    ]
    return bool(voting) and all(any(w.startswith("misfit") for w in t.warnings) for t in voting)


def _unreliable(comparison) -> list[str]:
    """Twins whose elpd, and so weight, rests on cross-validation refits that failed their gate."""
    if comparison is None or "elpd_reliable" not in comparison.table:
        return []
    t = comparison.table
    return [str(n) for n, ok in zip(t.twin.values, t.elpd_reliable.values) if not bool(ok)]


def _write(run: Run, found: Found) -> None:
    """Everything after the fits into the staging folder, then the atomic commit.

    The weighted figures are drawn in two forked children (:class:`~twinbayes.run.aside.Aside`,
    where that is safe) while this process writes the NetCDF files and the metadata.
    """
    from ..output.report import write_report

    folder, watch = run.folder, run.watch
    with watch("files"):
        folder.finish_writes()  # the twins' files, written while later twins fitted
    batches = _figures(run, found) if run.figures else []
    with ExitStack() as stack:
        drawing = [stack.enter_context(Aside(batch)) for batch in batches]
        with watch("files"):
            if found.comparison is not None:
                folder.write_comparison(found.comparison)
            if found.result is not None:
                folder.write_disagreement(found.result)
        folder.write_study(run.study)
        folder.write_metadata(
            found.twins, command=run.command or sys.argv, outcome=_outcome(run, found)
        )
        if drawing:
            with watch("figures"):
                for batch in drawing:
                    batch.wait()
    with watch("report"):
        write_report(folder.staging, folder.written)
    folder.commit()


def _outcome(run: Run, found: Found) -> dict:
    """How the run ended, as ``summary.json`` records it."""
    return {
        "code": int(found.outcome),
        "name": found.outcome.name,
        "skipped": run.skipped,
        "unreliable_weights": _unreliable(found.comparison),
        "no_twin_fits": _no_twin_fits(found.twins, found.weights),
        "forward_widening": _forward_summary(found.result),
    }


def _forward_summary(result: Disagreement | None) -> dict | None:
    """Per twin, the forward discrepancy's rate, last level and longest checked forecast
    (``None``: no scenarios, or widening off)."""
    found = result.forward_record() if result is not None else None
    if found is None:
        return None
    keep = ("rate", "since", "longest_checked")
    return {name: {k: r[k] for k in keep} for name, r in found.items()}


def _write_history(run: Run, patient: Patient, found: Found, history: list[dict] | None) -> None:
    """The patient's data so far and the history with this run appended (and its figure from two runs on)."""
    folder = run.folder
    folder.write_patient(patient)
    entries = [
        *(history or []),
        history_entry(patient, found.fitted, found.comparison, found.result),
    ]
    folder.write_history(entries)
    if run.figures and len(entries) > 1:
        from ..output.plots import plot_history

        plot_history(entries, folder.figure_path("history"))


def _say_ladder(twin: Twin, quiet: bool) -> None:
    """Every escalation of the gate's ladder, and the verdict of its last rung."""
    if len(twin.attempts) < 2:
        return
    for a in twin.attempts:
        verdict = "passed" if a.passed else "failed: " + "; ".join(a.reasons[:3])
        _say(
            f"      gate attempt {a.step + 1}: target_accept {a.target_accept:.3f}, {a.tune} warm-up, "
            f"{a.draws} draws, seed {a.seed} -> {verdict}",
            quiet,
        )
    if not twin.converged:
        _say(f"      ladder exhausted: {twin.name} is excluded ({'; '.join(twin.reasons)})", quiet)


def _weights(twins, comparison, study) -> dict[str, float] | None:
    if comparison is None:
        return (
            {twins[0].name: 1.0}
            if len(twins) == 1 and (twins[0].converged or study.comparison["include_unconverged"])
            else None
        )
    column = study.comparison[
        "weights"
    ]  # a column of Comparison.table: stacking, bayes_stacking, pseudo_bma or bma
    return {
        str(t): float(w)
        for t, w in zip(comparison.table.twin.values, comparison.table[column].values)
    }


def _figures(run: Run, found: Found) -> list[Callable[[], None]]:
    """The weighted figures, in two batches of about equal work (drawn side by side)."""
    folder, study = run.folder, run.study
    comparison, result, weights = found.comparison, found.result, found.weights
    from ..output.plots import (
        plot_average,
        plot_decision_table,
        plot_disagreement_over_time,
        plot_scenario_fans,
    )
    from ..output.report import decision_figure_name

    def average_and_decisions() -> None:
        if comparison is not None and weights:
            plot_average(found.fitted, weights, folder.figure_path("average"))
        for i, target in enumerate(result.data.target.values if result is not None else ()):
            name = decision_figure_name(i).removesuffix(".png")
            plot_decision_table(result, str(target), path=folder.figure_path(name))

    def scenarios() -> None:
        if result is None:
            return
        band = next(
            ((q.lower, q.upper) for q in study.qois if hasattr(q, "lower") and hasattr(q, "upper")),
            None,
        )
        plot_scenario_fans(result, folder.figure_path("scenario_fans"), band=band)
        plot_disagreement_over_time(result, folder.figure_path("disagreement_over_time"))

    return [average_and_decisions, scenarios]


def _twin_figures(folder, twins: list[Twin]) -> None:
    """Each twin's checks (posterior predictive, LOO-PIT): what needs the twin alone."""
    from ..output.plots import plot_twin_checks

    for twin in twins:
        plot_twin_checks(twin, folder.figure_path(f"{twin.name}_checks"))


def _shown_quantities(spec) -> list[str]:
    """The quantities a summary shows: the parameters, or for a population twin its individual ones."""
    if spec.population is None:
        return list(spec.parameters)
    z = set(spec.population.z_names)
    return [p for p in spec.parameters if p not in z] + list(spec.derived)


def summary_table(twins) -> str:
    """Posterior median and 95 % interval, R-hat and bulk ESS of every parameter of every twin.

    A population twin shows its individual quantities (deviations and derived quantities such as
    CL and V) instead of the standardised deviations it samples; those rows have no R-hat (the
    gate checks the sampled parameters).
    """
    import numpy as np

    width = max([20, *(len(tw.name) + 1 for tw in twins)])
    lines = [
        f"{'twin':<{width}} {'parameter':<12} {'median':>10} {'2.5%':>10} {'97.5%':>10} {'R-hat':>7} {'ESS':>6}  gate"
    ]
    for tw in twins:
        post = tw.idata["posterior"]
        checked = list(tw.diagnostics.table.parameter.values)
        for j, p in enumerate(_shown_quantities(tw.spec)):
            q = np.quantile(post[p].values, [0.5, 0.025, 0.975])
            if p in checked:
                row = tw.diagnostics.table.sel(parameter=p)
                rhat, ess = f"{float(row.rhat):>7.3f}", f"{float(row.ess_bulk):>6.0f}"
            else:
                rhat, ess = f"{'-':>7}", f"{'-':>6}"
            gate = ("passed" if tw.converged else "FAILED") if j == 0 else ""
            name = tw.name if j == 0 else ""
            lines.append(
                f"{name:<{width}} {p:<12} {q[0]:>10.4g} {q[1]:>10.4g} {q[2]:>10.4g} {rhat} {ess}  {gate}"
            )
    return "\n".join(lines)
