"""Cohorts on Dask: many patients x twins as independent tasks, resumable, merged into one DataTree.

Each task fits one spec to one patient (:func:`~twinbayes.fitting.twin.fit`, the study's seed
rule) and writes a small NetCDF file of what the cohort needs (posterior summaries of the
parameters, the convergence verdict and diagnostics, the PSIS-LOO elpd) *atomically* to
``OUT/tasks/<patient key>__<spec>.nc`` (written to a temporary name, then renamed).  A
run that is killed, or loses a worker, leaves only complete task files; running it again
skips every task whose file exists, so nothing finished is refitted and nothing is
duplicated.  When every task is done the files are merged into ``OUT/cohort.nc``: one
group per spec with ``patient`` as a dimension.

The tasks run on Dask distributed (Rocklin 2015): a ``LocalCluster`` of single-threaded
worker processes by default, or an existing scheduler (``scheduler="tcp://host:8786"``,
e.g. started by ``dask scheduler`` / ``dask worker`` on a cluster, or dask-jobqueue on
SLURM/PBS); the code is the same.  Workers need twinbayes installed and the data file at
the same path (a shared file system).  Patients appear under their pseudonymous key
(:mod:`twinbayes.inputs.privacy`), also in file names.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..inputs.names import check_name, inside
from ..inputs.patient import Patient, PatientDataError
from ..output.netcdf import write_netcdf

__all__ = ["CohortTask", "cohort_tasks", "run_cohort", "merge_cohort", "map_tasks"]


@dataclass(frozen=True)
class CohortTask:
    """One fit of a cohort: a spec to one subject of a data file, with its seed and sampler settings."""

    data: str
    subject: str
    spec: str
    seed: int
    settings: dict = field(default_factory=dict, hash=False)
    label: str = ""

    @property
    def file_name(self) -> str:
        """``<patient key>__<spec name>.nc`` (both checked names: nothing escapes the folder)."""
        return f"{check_name(self.label, 'patient key')}__{check_name(Path(self.spec).stem, 'twins.specs')}.nc"


class CohortTasks(list):
    """The tasks of a cohort (a list of :class:`CohortTask`) and the subjects that cannot be fitted.

    Attributes
    ----------
    unfittable : dict
        Subject label (pseudonym) -> why its data cannot be fitted (no observations, a weight
        below zero, ...): reported, and the others are fitted.
    """

    unfittable: dict[str, str]


def cohort_tasks(
    data: str | Path,
    specs: Sequence[str],
    *,
    subjects: Sequence[str] | None = None,
    seed: int = 0,
    **settings,
) -> CohortTasks:
    """Every (subject, spec) pair of a cohort; task ``k`` (subject-major) is fitted with seed ``seed + k``.

    Subjects default to all of the data file's, in file order (a file without a ``subject``
    column is one patient).  A subject whose data cannot be fitted is left out, with the
    reason, in :attr:`CohortTasks.unfittable` (under its pseudonym), and the others go on.
    """
    import csv

    from ..inputs.patient import MAX_BYTES, resolve_data_path
    from ..inputs.privacy import pseudonym
    from ..inputs.untrusted import read_file

    path = resolve_data_path(data)
    if subjects is None:
        text = read_file(path, MAX_BYTES, PatientDataError).decode("utf-8-sig", "replace")
        rows = csv.DictReader(text.splitlines())
        has_subject = "subject" in (rows.fieldnames or [])
        subjects = list(dict.fromkeys(r["subject"] for r in rows)) if has_subject else [""]
    tasks = CohortTasks()
    tasks.unfittable = {}
    for s in subjects:
        try:
            label = Patient.from_csv(path, subject=s or None).label or "patient"
        except PatientDataError as exc:
            reason = str(exc).replace(str(path), path.name)  # no user's folders in outputs
            tasks.unfittable[pseudonym(str(s)) or "patient"] = reason
            warnings.warn(
                f"cohort: subject {pseudonym(str(s))!r} is left out: {reason}",
                CohortWarning,
                stacklevel=2,
            )
            continue
        for spec in specs:
            tasks.append(
                CohortTask(str(path), str(s), str(spec), seed + len(tasks), settings, label)
            )
    return tasks


class CohortWarning(UserWarning):
    """A subject of a cohort was left out (its reason is in the message)."""


def _summary(twin) -> xr.Dataset:
    """What a cohort keeps of a fit: per-parameter posterior summaries, the gate and PSIS-LOO."""
    from ..comparison import loo

    post = twin.idata["posterior"]
    names = list(twin.spec.parameters)
    flat = np.stack([post[n].values.reshape(-1) for n in names])
    q = np.quantile(flat, [0.05, 0.5, 0.95], axis=1)
    res = loo(twin, refit=False)
    d = twin.diagnostics
    return xr.Dataset(
        {
            "mean": ("parameter", flat.mean(axis=1)),
            "sd": ("parameter", flat.std(axis=1, ddof=1)),
            "q05": ("parameter", q[0]),
            "median": ("parameter", q[1]),
            "q95": ("parameter", q[2]),
            "converged": twin.converged,
            "elpd_loo": res.attrs["elpd"],
            "elpd_loo_se": res.attrs["se"],
            "n_high_k": res.attrs["n_high_k"],
            "max_rhat": float(d.table.rhat.max()),
            "min_ess_bulk": float(d.table.ess_bulk.min()),
            "divergences": int(d.divergent),
            "seed": int(twin.settings["seed"]),
        },
        coords={"parameter": names},
    )


def run_task(task: CohortTask, folder: str) -> tuple[str, str, float]:
    """Fit one task unless its file exists; returns ``(file name, "fitted" | "skipped", seconds)``."""
    from ..fitting.twin import fit
    from ..spec.model_spec import load_spec

    target = inside(Path(folder), task.file_name)
    if target.exists():
        return task.file_name, "skipped", 0.0
    start = time.perf_counter()
    patient = Patient.from_csv(task.data, subject=task.subject or None)
    settings = {"cores": 1} | task.settings  # the workers share the machine, not one fit's chains
    twin = fit(load_spec(task.spec), patient, seed=task.seed, **settings)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    write_netcdf(_summary(twin), tmp)
    os.replace(tmp, target)  # atomic: a killed task leaves no file that looks complete
    return task.file_name, "fitted", time.perf_counter() - start


@contextmanager
def _client(scheduler: str | None, n_workers: int) -> Iterator:
    """A Dask client of ``scheduler``, or of a new ``LocalCluster`` of single-threaded worker processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            yield client


def map_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[..., None] | None = None,
) -> list:
    """``[fn(item) for item in items]``, in this process or as Dask tasks; results in item order.

    Without ``scheduler`` and ``n_workers`` the items run one after another here; otherwise
    each is a task on the scheduler at ``scheduler`` or on a ``LocalCluster`` of ``n_workers``
    processes (retried twice if its worker is lost).  ``progress(done, total)`` (or
    ``progress(done, total, result)`` when it takes three arguments) follows completion.
    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one) and
    must not depend on where it runs: then the results are the same either way.
    """
    items = list(items)
    tell = _teller(progress, len(items))
    if scheduler is None and not n_workers:
        results = []
        for item in items:
            results.append(fn(item))
            tell(len(results), results[-1])
        return results
    from distributed import as_completed

    with _client(scheduler, n_workers or 2) as client:
        futures = client.map(fn, items, pure=False, retries=2)
        for k, fut in enumerate(as_completed(futures), 1):
            tell(k, fut.result())
        return [f.result() for f in futures]


def _teller(progress, total: int) -> Callable[[int, Any], None]:
    """Call ``progress`` with two or three arguments, whichever it takes."""
    if progress is None:
        return lambda k, result: None
    import inspect

    if len(inspect.signature(progress).parameters) >= 3:
        return lambda k, result: progress(k, total, result)
    return lambda k, result: progress(k, total)


def run_cohort(
    tasks: Sequence[CohortTask],
    out: str | Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = 2,
    progress: Callable[[int, int, str, str], None] | bool = True,
) -> xr.DataTree:
    """Run every task (skipping finished ones) on Dask and merge the results.

    Parameters
    ----------
    tasks : sequence of CohortTask
    out : path
        Results folder: ``tasks/`` holds one file per finished task, ``cohort.nc`` the merge.
    scheduler : str, optional
        Address of a running Dask scheduler; default a ``LocalCluster`` of ``n_workers``
        single-threaded processes (each fit runs its chains on one thread).
    n_workers : int
        Workers of the local cluster (default 2; ``None`` or 0: one process, no Dask).
    progress : callable or bool
        ``progress(done, total, file name, "fitted" | "skipped")`` as tasks finish; ``True``
        (default) prints one line per task to stderr, ``False`` nothing.

    Returns
    -------
    xarray.DataTree
        :func:`merge_cohort` of the folder.
    """
    if progress is True:
        progress = _print_progress
    elif progress is False:
        progress = None
    folder = Path(out) / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.partial"):  # left by a task killed while writing
        stale.unlink()
    todo = [t for t in tasks if not (folder / t.file_name).exists()]
    done = len(tasks) - len(todo)
    for t in tasks:
        if t not in todo and progress is not None:
            progress(done, len(tasks), t.file_name, "skipped")

    def report(k: int, _total: int, result: tuple[str, str, float]) -> None:
        if progress is not None:
            progress(done + k, len(tasks), result[0], result[1])

    if todo:
        run = partial(run_task, folder=str(folder))
        map_tasks(run, todo, scheduler=scheduler, n_workers=n_workers, progress=report)
        _remove_stale_partials(folder, todo)
    return merge_cohort(out, tasks)


def _remove_stale_partials(folder: Path, tasks: Sequence[CohortTask]) -> None:
    """Remove what a worker lost while writing left of a task that another worker then finished."""
    finished = {f".{t.file_name}." for t in tasks if (folder / t.file_name).exists()}
    for stale in folder.glob(".*.partial"):
        if any(stale.name.startswith(prefix) for prefix in finished):
            stale.unlink(missing_ok=True)


def _print_progress(done: int, total: int, name: str, how: str) -> None:
    print(f"cohort: [{done}/{total}] {name.removesuffix('.nc')} {how}", file=sys.stderr, flush=True)


def merge_cohort(out: str | Path, tasks: Sequence[CohortTask]) -> xr.DataTree:
    """Merge the task files into one DataTree (a group per spec, ``patient`` a dimension); write ``cohort.nc``."""
    folder = Path(out) / "tasks"
    missing = [t.file_name for t in tasks if not (folder / t.file_name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} task(s) not finished ({', '.join(missing[:3])}, ...); run the cohort again"
        )
    groups = {}
    for spec in dict.fromkeys(Path(t.spec).stem for t in tasks):
        mine = [t for t in tasks if Path(t.spec).stem == spec]
        parts = [xr.load_dataset(folder / t.file_name, engine="h5netcdf") for t in mine]
        merged = xr.concat(parts, dim="patient").assign_coords(patient=[t.label for t in mine])
        groups[spec] = merged.assign_attrs(spec=spec)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs["unfittable_subjects"] = json.dumps(getattr(tasks, "unfittable", {}))
    tmp = Path(out) / ".cohort.nc.partial"
    write_netcdf(tree, tmp)
    os.replace(tmp, Path(out) / "cohort.nc")
    return tree
