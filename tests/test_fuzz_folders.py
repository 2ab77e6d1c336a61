"""Property-based tests of issue 42: whatever a results folder holds, and whatever unit, FHIR
subject or bundle a file gives, only twinbayes' own errors come out (never a traceback of
another kind) and no file outside the folder is created, changed or read into an output.

Deterministic in the default run (the ``deterministic`` profile of ``conftest.py``: examples
derived from the test, no database); ``-m slow`` runs the same properties with fresh random
examples, many more of them (exploratory fuzzing).
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fhir import VALID
from test_hostile_folders import FILES, QUICK, results_folder

import twinbayes.run.pipeline
from twinbayes.error import TwinbayesError
from twinbayes.inputs.fhir import read_bundle
from twinbayes.inputs.units import parse_unit
from twinbayes.run.cli import main

DEPTHS = [
    pytest.param(settings(max_examples=25, deadline=None), id="deterministic"),
    pytest.param(
        settings(max_examples=400, deadline=None, derandomize=False),
        id="explore",
        marks=pytest.mark.slow,
    ),
]
NO_FIXTURE_CHECK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


class Refitted(Exception):
    """The update got past every check of the folder (the refit itself is not under test)."""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return results_folder(tmp_path_factory.mktemp("made"))


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    _containers,
    max_leaves=12,
)
NAMES = st.sampled_from(["pk_1cmt_iv", "../../x", "a/b", "x\n", "<b>", "", "twins", "..", "CON"])
CHANGES = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("json"), JSON),
    st.tuples(st.just("twin name"), NAMES),
    st.tuples(st.just("truncate"), st.integers(0, 400)),
    st.sampled_from([("link", "secret"), ("link", "/dev/zero"), ("fifo", None), ("folder", None)]),
    st.sampled_from([("remove", None)]),
)


def _change(folder: Path, rel: str, change: tuple, secret: Path) -> None:
    """Do one hostile change to the file ``rel`` of the folder."""
    kind, value = change
    path = folder / rel
    if kind == "twin name":
        summary = folder / "summary.json"
        if summary.is_symlink() or not summary.is_file():
            return  # an earlier change made it a link, a FIFO or a folder
        try:
            doc = json.loads((folder / "summary.json").read_text())
            doc["twins"] = {value: next(iter(doc["twins"].values()))}
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            return  # an earlier change damaged summary.json already
        (folder / "summary.json").write_text(json.dumps(doc))
        return
    if kind == "truncate":
        path.write_bytes(path.read_bytes()[:value])
        return
    path.unlink()
    if kind == "bytes":
        path.write_bytes(value)
    elif kind == "json":
        path.write_text(json.dumps(value))
    elif kind == "link":
        path.symlink_to(secret if value == "secret" else value)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()


def _outside(root: Path, folder: Path) -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if folder not in (p, *p.parents) and not p.is_symlink() and p.is_file()
    }


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_results_folder_gives_a_report_or_a_twinbayes_error(made, tmp_path, monkeypatch, depth):
    def refit(*args, **kwargs):
        raise Refitted

    monkeypatch.setattr(twinbayes.run.pipeline, "fit", refit)
    secret = tmp_path / "secret.txt"
    secret.write_text("private-words-never-in-a-report")
    (tmp_path / "new.csv").write_text(
        "time,time_unit,event,name,value,unit\n10,h,observation,concentration,0.05,ug/mL\n"
    )

    @settings(depth, suppress_health_check=NO_FIXTURE_CHECK)
    @given(changes=st.lists(st.tuples(st.sampled_from(FILES), CHANGES), min_size=1, max_size=3))
    def check(changes):
        folder = tmp_path / "res"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(made, folder, symlinks=True)
        for rel, change in changes:
            if (folder / rel).is_file() and not (folder / rel).is_symlink():
                _change(folder, rel, change, secret)
        before = _outside(tmp_path, folder)
        for command in (
            ["report", str(folder)],
            ["update", str(folder), str(tmp_path / "new.csv")],
        ):
            try:
                main(command + (QUICK if command[0] == "update" else []))
            except Refitted:
                pass  # every file the update reads was sound
        report = folder / "report.html"
        if report.is_file() and not report.is_symlink():
            assert "private-words" not in report.read_text(errors="replace")
        assert _outside(tmp_path, folder) == before
        assert secret.read_text() == "private-words-never-in-a-report"

    check()


UNIT_TOKENS = st.sampled_from(
    ["mg", "g", "L", "mL", "/", ".", "*", "10*", "10^", "999", "-999", "3", "-1", "h", "min",
     "[IU]", "{cells}", "(", ")", "%", "m", "mol", "99999999999999999999", "e308", "1"]
)  # fmt: skip
UNITS = st.one_of(st.lists(UNIT_TOKENS, max_size=8).map("".join), st.text(max_size=20))


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_unit_text_gives_a_unit_or_a_unit_error(depth):
    @settings(depth, max_examples=depth.max_examples * 20)
    @given(UNITS)
    def check(text):
        try:
            unit = parse_unit(text)
        except TwinbayesError:
            return
        assert unit.factor > 0 and unit.factor < float("inf")

    check()


SUBJECTS = st.one_of(
    st.none(),
    st.just({"reference": "Patient/x"}),
    st.just({"reference": "Patient/y"}),
    st.builds(lambda r: {"reference": r}, st.text(max_size=20)),
    JSON,
)


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_subject_gives_this_patients_data_or_a_twinbayes_error(depth):
    """Only resources whose subject is the bundle's Patient (or none) are read as its own."""

    @settings(depth, max_examples=depth.max_examples * 8)
    @given(st.lists(SUBJECTS, min_size=len(VALID["entry"]) - 1, max_size=len(VALID["entry"]) - 1))
    def check(subjects):
        bundle = json.loads(json.dumps(VALID))
        for entry, subject in zip(bundle["entry"][1:], subjects, strict=True):
            if subject is not None:
                entry["resource"]["subject"] = subject
        try:
            patient = read_bundle(bundle)
        except TwinbayesError:
            return
        refs = [s.get("reference") if isinstance(s, dict) else s for s in subjects]
        assert all(r in (None, "Patient/x") or str(r).endswith("/Patient/x") for r in refs)
        assert patient.id == "x"

    check()
