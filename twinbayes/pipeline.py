"""Running a study: fit every twin, compare, simulate scenarios, write the results folder."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .compare import Comparison, compare
from .disagreement import Disagreement, disagreement
from .fit import Twin, fit
from .patient import Patient
from .results import ResultsFolder
from .spec.model_spec import load_spec
from .study import Study

__all__ = ["StudyResult", "run_study"]


@dataclass
class StudyResult:
    """What a study run produced (also written to ``path``)."""

    study: Study
    twins: list[Twin]
    comparison: Comparison | None
    disagreement: Disagreement | None
    path: Path | None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def run_study(
    study: Study,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    figures: bool = True,
    quiet: bool = False,
    command: list[str] | None = None,
) -> StudyResult:
    """Run ``study`` and (when ``out`` is given) write its results folder atomically.

    Every twin is fitted with seed ``study.seed + i`` (i = 1, 2, ...); the
    comparison and the scenario simulation use ``study.seed``.  A twin that
    fails its convergence gate is reported and, unless the study opts in,
    gets no weight.
    """
    folder = ResultsFolder.create(Path(out), force=force) if out is not None else None
    try:
        patient = Patient.from_csv(study.data, subject=study.subject)
        specs = [load_spec(p) for p in study.specs]
        _say(
            f"study {study.name}: {len(specs)} twin(s) of patient {patient.id!r} ({study.data.name})",
            quiet,
        )
        twins = []
        for i, spec in enumerate(specs, 1):
            _say(f"[{i}/{len(specs)}] fitting {spec.name} ({spec.title}) ...", quiet)
            t0 = time.perf_counter()
            twin = fit(
                spec,
                patient,
                seed=study.seed + i,
                gate=study.gate,
                progress=progress,
                **study.sampler,
            )
            _say(f"      {time.perf_counter() - t0:.1f} s; {twin.diagnostics}", quiet)
            if twin.excluded:
                _say(
                    f"      left out {len(twin.excluded)} pre-dose observation(s) that the twin predicts as 0 by construction",
                    quiet,
                )
            twins.append(twin)
            if folder:
                folder.write_twin(twin)
        _say("\n" + summary_table(twins) + "\n", quiet)
        comparison = result = None
        if len(twins) > 1:
            _say(
                "comparing the twins out of sample (PSIS-LOO; exact refits where Pareto k is high) ...",
                quiet,
            )
            c = study.comparison
            try:
                comparison = compare(
                    twins,
                    seed=study.seed,
                    include_unconverged=c["include_unconverged"],
                    max_refits=c["max_refits"],
                    kfold_k=c["kfold_k"],
                    bma=c["bma"],
                )
            except ValueError as exc:  # e.g. no twin passed its gate
                _say(f"comparison skipped: {exc}", quiet)
            if comparison is not None:
                _say(str(comparison), quiet)
        weights = _weights(twins, comparison, study)
        if study.scenarios and weights:
            _say(
                f"simulating {len(study.scenarios)} scenario(s) under every twin and the ensemble ...",
                quiet,
            )
            result = disagreement(
                twins,
                weights,
                study.scenarios,
                study.times,
                qois=study.qois,
                targets=study.targets,
                seed=study.seed,
            )
            _say(str(result), quiet)
        elif study.scenarios:
            _say(
                "scenarios skipped: no twin has ensemble weight (none passed its convergence gate)",
                quiet,
            )
        if folder:
            if comparison is not None:
                folder.write_comparison(comparison)
            if result is not None:
                folder.write_disagreement(result)
            if figures:
                _figures(folder, twins, comparison, result, weights, study)
            folder.write_study(study)
            folder.write_metadata(twins, command=command or sys.argv)
            from .report import write_report

            write_report(folder.staging)
            folder.commit()
            _say(f"results written to {folder.path} (open {folder.path / 'report.html'})", quiet)
        return StudyResult(study, twins, comparison, result, folder.path if folder else None)
    except BaseException:
        if folder:
            folder.abort()
        raise


def _weights(twins, comparison, study) -> dict[str, float] | None:
    if comparison is None:
        return (
            {twins[0].name: 1.0}
            if len(twins) == 1 and (twins[0].converged or study.comparison["include_unconverged"])
            else None
        )
    column = study.comparison[
        "weights"
    ]  # a column of Comparison.table: stacking, pseudo_bma or bma
    return {
        str(t): float(w)
        for t, w in zip(comparison.table.twin.values, comparison.table[column].values)
    }


def _figures(folder, twins, comparison, result, weights, study) -> None:
    from .plots import (
        plot_average,
        plot_decision_table,
        plot_disagreement_over_time,
        plot_scenario_fans,
        plot_twin_checks,
    )

    for twin in twins:
        plot_twin_checks(twin, folder.figure_path(f"{twin.name}_checks"))
    if comparison is not None and weights:
        plot_average(twins, weights, folder.figure_path("average"))
    if result is not None:
        band = next(
            ((q.lower, q.upper) for q in study.qois if hasattr(q, "lower") and hasattr(q, "upper")),
            None,
        )
        plot_scenario_fans(result, folder.figure_path("scenario_fans"), band=band)
        plot_disagreement_over_time(result, folder.figure_path("disagreement_over_time"))
        if result.data.sizes["target"]:
            plot_decision_table(result, path=folder.figure_path("decision_table"))


def summary_table(twins) -> str:
    """Posterior median and 95 % interval, R-hat and bulk ESS of every parameter of every twin."""
    import numpy as np

    lines = [
        f"{'twin':<20} {'parameter':<12} {'median':>10} {'2.5%':>10} {'97.5%':>10} {'R-hat':>7} {'ESS':>6}  gate"
    ]
    for tw in twins:
        post = tw.idata["posterior"]
        for j, p in enumerate(tw.spec.parameters):
            q = np.quantile(post[p].values, [0.5, 0.025, 0.975])
            row = tw.diagnostics.table.sel(parameter=p)
            gate = ("passed" if tw.converged else "FAILED") if j == 0 else ""
            name = tw.name if j == 0 else ""
            lines.append(
                f"{name:<20} {p:<12} {q[0]:>10.4g} {q[1]:>10.4g} {q[2]:>10.4g} {float(row.rhat):>7.3f} {float(row.ess_bulk):>6.0f}  {gate}"
            )
    return "\n".join(lines)
