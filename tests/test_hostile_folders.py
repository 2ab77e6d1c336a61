"""A results folder is untrusted input (mailed, unzipped, shared): ``report``, ``update`` and
``run --force`` follow no link planted in it, read no damaged file as if it were sound, refit
nothing before the folder is checked, and replace only the folder twinbayes wrote.

Issue 42; each test failed on ee96226 (a link was written through or embedded, a twin name
opened a file outside the folder, a damaged file gave a traceback after every refit, a folder
that appeared at ``--out`` was deleted)."""

import json
import os
import shutil
from pathlib import Path

import pytest
from test_untrusted import pk_study

import twinbayes.run.pipeline
from twinbayes.error import ResultsFolderError
from twinbayes.output.results import MARKER, OutputError, ResultsFolder
from twinbayes.run.cli import main

QUICK = ["--quiet", "--no-ladder", "--draws", "100", "--tune", "100", "--chains", "1"]
SECRET = "the-secret-in-a-private-file"
NEW_ROWS = "time,time_unit,event,name,value,unit\n10,h,observation,concentration,0.05,ug/mL\n"


def results_folder(tmp: Path) -> Path:
    """A results folder of one twin (with its figure) in ``tmp``."""
    study = pk_study(tmp, specs=("pk_1cmt_iv",))
    assert main(["run", str(study), "--out", str(tmp / "out"), *QUICK]) in (0, 3, 4)
    return tmp / "out"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A results folder written once for the module."""
    return results_folder(tmp_path_factory.mktemp("made"))


@pytest.fixture
def copy(made, tmp_path):
    """A fresh copy of the folder, a private file beside it and new data for an update."""
    folder = tmp_path / "res"
    shutil.copytree(made, folder, symlinks=True)
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "new.csv").write_text(NEW_ROWS)
    return folder


@pytest.fixture
def no_refit(monkeypatch):
    """Fitting fails the test: an update must refuse a bad folder before refitting any twin."""

    def refit(*args, **kwargs):
        raise AssertionError("refitted a twin before checking the results folder")

    monkeypatch.setattr(twinbayes.run.pipeline, "fit", refit)


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry of the folder: a file's bytes, a link's target."""
    return {
        str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def _files_of(made: Path) -> list[str]:
    return sorted(str(p.relative_to(made)) for p in made.rglob("*") if p.is_file())


FILES = [
    "summary.json",
    "provenance.json",
    "study.toml",
    "history.json",
    "patient.csv",
    "twins/pk_1cmt_iv.nc",
    "figures/pk_1cmt_iv_checks.png",
    "specs/pk_1cmt_iv.toml",
    MARKER,
]
READ_BY_REPORT = {"summary.json", "provenance.json", "study.toml", "history.json", MARKER}
READ_BY_REPORT |= {"twins/pk_1cmt_iv.nc", "figures/pk_1cmt_iv_checks.png"}
READ_BY_UPDATE = {"summary.json", "provenance.json", "study.toml", "history.json", "patient.csv"}


def test_the_list_covers_every_file_a_results_folder_holds(made):
    assert sorted(FILES) == [f for f in _files_of(made) if f != "report.html"]


@pytest.mark.parametrize("rel", FILES)
def test_a_link_at_any_file_is_never_followed(copy, rel, capsys, no_refit):
    """The file replaced by a link to a private file: ``report`` and ``update`` refuse the
    folder before reading it (the private file is never embedded, no twin is refitted); the
    folder and the private file stay byte-identical."""
    secret = copy.parent / "secret.txt"
    (copy / rel).unlink()
    (copy / rel).symlink_to(secret)
    before = _snapshot(copy)
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "Traceback" not in err, err
    assert SECRET not in (copy / "report.html").read_text()
    assert main(["update", str(copy), str(copy.parent / "new.csv"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err, err
    assert secret.read_text() == SECRET and _snapshot(copy) == before


def test_a_linked_folder_is_never_entered(copy, tmp_path, capsys):
    outside = tmp_path / "outside"
    shutil.move(copy / "figures", outside)
    (copy / "figures").symlink_to(outside)
    assert main(["report", str(copy)]) == 2
    assert "figures: a symbolic link" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["report.html", "report.html.tmp", ".report.html.tmp"])
def test_report_writes_through_no_planted_link(copy, name):
    """A planted link refuses the folder; and where the report is written (a fresh file renamed
    into place) a link of that name would be replaced, never written through."""
    from twinbayes.inputs.untrusted import replace_in_folder

    victim = copy.parent / "victim.txt"
    victim.write_text("keep me")
    (copy / name).unlink(missing_ok=True)
    (copy / name).symlink_to(victim)
    assert main(["report", str(copy)]) == 2
    replace_in_folder(copy, name, b"new")
    assert victim.read_text() == "keep me"
    assert (copy / name).read_bytes() == b"new" and not (copy / name).is_symlink()


def test_a_figure_that_is_not_a_png_is_refused(copy, capsys):
    (copy / "figures" / "pk_1cmt_iv_checks.png").write_text(SECRET)
    assert main(["report", str(copy)]) == 2
    assert "not a PNG image" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../x", "a/b", "x\n", "<b>x</b>"])
def test_twin_names_read_back_are_checked_like_spec_names(copy, name, capsys, no_refit):
    summary = json.loads((copy / "summary.json").read_text())
    summary["twins"] = {name: summary["twins"]["pk_1cmt_iv"]}
    (copy / "summary.json").write_text(json.dumps(summary))
    for args in (["report", str(copy)], ["update", str(copy), str(copy.parent / "new.csv")]):
        assert main(args + (QUICK if args[0] == "update" else [])) == 2
        err = capsys.readouterr().err
        assert "summary.json" in err and "is not a valid name" in err


@pytest.mark.parametrize(
    ("rel", "text", "message"),
    [
        ("summary.json", '{"twins": ', "not valid JSON"),
        ("summary.json", "[1, 2]", "expected a JSON object"),
        ("summary.json", '{"twins": {"a": 1}}', "has no verdict"),
        ("summary.json", '{"x": ' + "1" * 5000 + "}", "not valid JSON"),
        ("history.json", '{"runs": 1}', "expected a JSON list"),
        ("provenance.json", "\xff\xfe", "not valid JSON"),
        ("study.toml", "[study\n", "study"),
        ("twins/pk_1cmt_iv.nc", "not netcdf", "NetCDF"),
        ("patient.csv", "subject,time\n", "patient.csv"),
    ],
)
def test_damaged_files_are_errors_before_any_refit(copy, rel, text, message, capsys, no_refit):
    (copy / rel).write_text(text)
    before = _snapshot(copy)
    commands = [["report", str(copy)]] if rel in READ_BY_REPORT else []
    if rel in READ_BY_UPDATE:
        commands.append(["update", str(copy), str(copy.parent / "new.csv"), *QUICK])
    for args in commands:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert _snapshot(copy) == before


def test_a_folder_without_the_marker_is_not_reported_or_updated(copy, capsys, no_refit):
    (copy / MARKER).unlink()
    assert main(["report", str(copy)]) == 2
    assert "not a twinbayes results folder" in capsys.readouterr().err
    assert main(["update", str(copy), str(copy.parent / "new.csv"), *QUICK]) == 2
    assert "not a twinbayes results folder" in capsys.readouterr().err


def test_an_identifier_planted_in_patient_csv_is_refused(copy, capsys, no_refit):
    """update used to take the folder's subject as already pseudonymous and publish it."""
    text = (copy / "patient.csv").read_text()
    label = text.splitlines()[1].split(",")[0]
    (copy / "patient.csv").write_text(text.replace(label, "Jane Doe"))
    assert main(["update", str(copy), str(copy.parent / "new.csv"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "not a pseudonym" in err
    assert not any(b"Jane Doe" in v for k, v in _snapshot(copy).items() if k != "patient.csv")


def test_a_folder_appearing_at_out_during_the_run_is_left_alone(tmp_path, monkeypatch, capsys):
    """--force or not: the folder a colleague made at --out mid-run survives; the new results
    go beside it and the message says where (it used to be renamed aside and deleted)."""
    study = pk_study(tmp_path, specs=("pk_1cmt_iv",))
    out = tmp_path / "out"
    fit = twinbayes.run.pipeline.fit

    def fit_and_interfere(*args, **kwargs):
        if not out.exists():
            out.mkdir()
            (out / "thesis.tex").write_text("years of work")
        return fit(*args, **kwargs)

    monkeypatch.setattr(twinbayes.run.pipeline, "fit", fit_and_interfere)
    for force in ([], ["--force"]):
        assert main(["run", str(study), "--out", str(out), *QUICK, "--no-figures", *force]) == 2
        err = capsys.readouterr().err
        assert "appeared during the run and was left as it is" in err
        kept = Path(err.split("the new results are in ")[1].split()[0])
        assert (kept / MARKER).is_file() and (kept / "summary.json").is_file()
        assert (out / "thesis.tex").read_text() == "years of work"
        shutil.rmtree(kept)
        shutil.rmtree(out)


def test_a_replaced_folder_is_not_removed_by_force(made, tmp_path, monkeypatch, capsys):
    """The folder seen at the start (device, inode) is the only one --force replaces."""
    study = pk_study(tmp_path, specs=("pk_1cmt_iv",))
    out = tmp_path / "out"
    shutil.copytree(made, out)
    fit = twinbayes.run.pipeline.fit

    def swap(*args, **kwargs):
        if (out / MARKER).exists():
            shutil.rmtree(out)
            out.mkdir()
            (out / MARKER).write_text("a marker copied by hand")
            (out / "notes.txt").write_text("someone else's")
        return fit(*args, **kwargs)

    monkeypatch.setattr(twinbayes.run.pipeline, "fit", swap)
    args = ["run", str(study), "--out", str(out), *QUICK, "--no-figures", "--force"]
    assert main(args) == 2
    assert "was replaced by something else" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "someone else's"


def test_a_second_run_on_the_same_folder_is_refused_at_start(tmp_path):
    first = ResultsFolder.create(tmp_path / "out")
    with pytest.raises(OutputError, match="another twinbayes run is writing"):
        ResultsFolder.create(tmp_path / "out")
    first.abort()
    ResultsFolder.create(tmp_path / "out").abort()  # free again
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_partial_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    stale = tmp_path / ".out.partial-abc123"
    (stale / "twins").mkdir(parents=True)
    (stale / MARKER).write_text("x")
    (stale / "patient.csv").write_text("patient data")
    foreign = tmp_path / ".out.partial-notours"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not twinbayes'")
    folder = ResultsFolder.create(tmp_path / "out")
    assert not stale.exists() and (foreign / "keep.txt").exists()
    folder.abort()


def test_bad_names_inside_the_folder_are_refused():
    from twinbayes.inputs.untrusted import read_in_folder

    for rel in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(ResultsFolderError):
            read_in_folder(Path("."), rel, 100)
