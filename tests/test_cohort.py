"""Cohorts on Dask: a killed run resumes without refitting finished tasks; a lost worker is survived."""

import os
import signal
import subprocess
import sys
import time

import pytest

from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.run.cohort import cohort_tasks, run_cohort

SHORT = dict(draws=300, tune=300, chains=2, ladder=NO_LADDER)
SPECS = ["pk_1cmt_oral", "pk_1cmt_oral_lag"]

CHILD = """
from twinbayes.run.cohort import cohort_tasks, run_cohort
from twinbayes.fitting.ladder import NO_LADDER
if __name__ == "__main__":
    tasks = cohort_tasks("bundled:theophylline.csv", {specs!r}, subjects={subjects!r}, draws=300, tune=300,
                         chains=2, ladder=NO_LADDER)
    run_cohort(tasks, {out!r}, n_workers=1)
"""


def _finished(out):
    folder = out / "tasks"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.nc")} if folder.exists() else {}


def test_a_killed_cohort_resumes_without_refitting_and_survives_a_lost_worker(tmp_path):
    from distributed import Client, LocalCluster

    subjects = ["1", "2", "3"]
    out = tmp_path / "cohort"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(specs=SPECS, subjects=subjects, out=str(out)))
    child = subprocess.Popen([sys.executable, str(script)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while len(_finished(out)) < 2 and time.time() < deadline and child.poll() is None:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the whole run, workers included, mid-cohort
    child.wait()
    before = _finished(out)
    assert 2 <= len(before) < 6, before

    tasks = cohort_tasks("bundled:theophylline.csv", SPECS, subjects=subjects, **SHORT)
    events = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)

        def progress(done, total, name, how):
            events.append((name, how))
            if how == "fitted" and sum(h == "fitted" for _, h in events) == 1:
                os.kill(next(iter(pids.values())), signal.SIGKILL)  # lose a worker mid-run

        tree = run_cohort(tasks, out, scheduler=cluster.scheduler_address, progress=progress)
    after = _finished(out)
    assert {n for n, h in events if h == "skipped"} == set(before)  # nothing finished is refitted
    assert all(after[n] == before[n] for n in before)  # the files are untouched
    assert sorted(n for n, h in events if h == "fitted") == sorted(set(after) - set(before))
    assert len(after) == 6 and not list((out / "tasks").glob(".*"))
    for spec in SPECS:
        ds = tree[spec].to_dataset()
        assert ds.sizes["patient"] == 3 and len(set(ds.patient.values)) == 3
        assert (ds["q05"] <= ds["median"]).all() and (ds["median"] <= ds["q95"]).all()
    assert (out / "cohort.nc").is_file()


@pytest.mark.slow
def test_the_twelve_theophylline_subjects_by_the_oral_pk_specs(tmp_path):
    """Must-show 3 of #18 at full size: 12 subjects x 3 oral specs on a LocalCluster of 2 workers."""
    specs = ["pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]
    tasks = cohort_tasks("bundled:theophylline.csv", specs, seed=1)
    tree = run_cohort(tasks, tmp_path / "theoph")
    for spec in specs:
        ds = tree[spec].to_dataset()
        assert ds.sizes["patient"] == 12
        print(
            spec,
            "converged:",
            int(ds.converged.sum()),
            "of 12; mean CL",
            ds["mean"].sel(parameter="CL").values.round(2),
        )


def test_the_draws_do_not_depend_on_the_threads_the_chains_run_on():
    import numpy as np

    from twinbayes import Patient, fit, load_spec

    patient = Patient.from_csv("bundled:theophylline.csv", subject=2)
    a = fit(load_spec("pk_1cmt_oral"), patient, seed=4, **SHORT)
    b = fit(load_spec("pk_1cmt_oral"), patient, seed=4, cores=1, **SHORT)
    for v in a.idata["posterior"].data_vars:
        np.testing.assert_array_equal(
            a.idata["posterior"][v].values, b.idata["posterior"][v].values
        )


def test_partials_of_finished_tasks_are_removed_and_no_others(tmp_path):
    """What a lost writer left of a task another worker finished goes; a partial of an unfinished
    task (its writer may still be alive) stays."""
    from twinbayes.run.cohort import _remove_stale_partials

    done, running = cohort_tasks("bundled:theophylline.csv", SPECS[:1], subjects=["1", "2"])
    (tmp_path / done.file_name).write_bytes(b"finished")
    lost = tmp_path / f".{done.file_name}.4242.partial"
    live = tmp_path / f".{running.file_name}.4343.partial"
    for p in (lost, live):
        p.write_bytes(b"half")
    _remove_stale_partials(tmp_path, [done, running])
    assert not lost.exists() and live.exists() and (tmp_path / done.file_name).exists()
