"""Twins over time: new observations extend a results folder; refused updates leave it byte-identical."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from twinbayes import Patient
from twinbayes.inputs.patient import PatientDataError
from twinbayes.run.cli import main
from twinbayes.run.updates import merge_new_data

SHORT = [
    "--draws", "300", "--tune", "300", "--chains", "2", "--quiet", "--include-unconverged", "--no-ladder",
]  # fmt: skip
HEADER = "time,time_unit,event,name,value,unit\n"


def _csv(tmp_path: Path, name: str, rows: str) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rows)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def theoph1():
    return Patient.from_csv("bundled:theophylline.csv", subject=1)


def test_patient_csv_round_trip(tmp_path, theoph1):
    back = Patient.from_csv(theoph1.write_csv(tmp_path / "p.csv"))
    a, b = theoph1.data.copy(), back.data.copy()
    a.attrs, b.attrs = {}, {}
    assert a.identical(b)
    assert back.id == theoph1.label  # the pseudonym, never the identifier


def test_new_data_are_appended_in_the_data_s_units(tmp_path, theoph1):
    new = Patient.from_csv(
        _csv(
            tmp_path,
            "new.csv",
            "1740,min,dose,oral,100,mg\n1800,min,observation,concentration,2900,ug/L\n",
        )
    )
    merged = merge_new_data(theoph1, new, "new.csv")
    assert merged.data.sizes["obs"] == theoph1.data.sizes["obs"] + 1
    assert merged.data.obs_time.values[-1] == pytest.approx(30.0)  # minutes -> the data's hours
    t, y = merged.observations("concentration", "mg/L", "h")
    assert y[-1] == pytest.approx(2.9)
    assert merged.doses("oral", "mg", "h")[0][-1] == pytest.approx(29.0)
    assert merged.label == theoph1.label


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("20,h,observation,concentration,2.9,mg/L\n", "not after the last observation"),
        ("24.37,h,observation,concentration,2.9,mg/L\n", "not after the last observation"),
        (
            "30,h,observation,concentration,2.9,mg/L\n30,h,observation,concentration,3.0,mg/L\n",
            "appears twice",
        ),
        ("30,h,observation,concentration,2.9,mmHg\n", "does not convert"),
        (
            "0,h,covariate,weight,90,kg\n30,h,observation,concentration,2.9,mg/L\n",
            "covariates are constant",
        ),
    ],
)
def test_bad_updates_are_refused_with_the_reason(tmp_path, theoph1, rows, message):
    new = Patient.from_csv(_csv(tmp_path, "new.csv", rows))
    with pytest.raises(PatientDataError, match=message):
        merge_new_data(theoph1, new, "new.csv")


def test_another_patient_s_data_are_refused(tmp_path, theoph1):
    path = tmp_path / "other.csv"
    path.write_text(
        "subject," + HEADER.replace("\n", "") + "\n7,30,h,observation,concentration,2.9,mg/L\n"
    )
    with pytest.raises(PatientDataError, match="another patient"):
        merge_new_data(theoph1, Patient.from_csv(path), "other.csv")
    path.write_text(
        "subject," + HEADER.replace("\n", "") + "\n1,30,h,observation,concentration,2.9,mg/L\n"
    )
    merged = merge_new_data(
        theoph1, Patient.from_csv(path), "same.csv"
    )  # the same subject, by identifier
    assert merged.data.sizes["obs"] == theoph1.data.sizes["obs"] + 1


def test_update_extends_the_history_and_refusals_leave_the_folder_as_it_was(tmp_path, capsys):
    out = tmp_path / "example"
    main(["run", "--out", str(out), "--no-figures", *SHORT])
    before = _digest(out)
    assert json.loads((out / "history.json").read_text())[0]["n_obs"] == 11
    bad = [
        _csv(tmp_path, "early.csv", "20,h,observation,concentration,2.9,mg/L\n"),
        _csv(tmp_path, "unit.csv", "30,h,observation,concentration,2.9,mmHg\n"),
    ]
    for path in bad:
        assert main(["update", str(out), str(path), *SHORT]) == 2
        assert _digest(out) == before
    assert "not after the last observation" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    (damaged / "history.json").write_text("{not json")
    (damaged / "study.toml").write_text(
        (out / "study.toml").read_text().replace("[twins]", "[twins")
    )
    assert main(["update", str(damaged), str(bad[0]), *SHORT]) == 2
    assert "damaged" in capsys.readouterr().err
    new = _csv(
        tmp_path,
        "new.csv",
        "30,h,observation,concentration,2.9,mg/L\n36,h,observation,concentration,1.8,mg/L\n",
    )
    main(["update", str(out), str(new), *SHORT])
    history = json.loads((out / "history.json").read_text())
    assert [e["n_obs"] for e in history] == [11, 13] and history[1]["last_time"] == 36.0
    assert set(history[1]["twins"]) == {"pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"}
    assert all(0 <= v <= 1 for v in history[1]["between_share"].values())
    assert (out / "figures" / "history.png").is_file()
    report = (out / "report.html").read_text()
    assert "Over time: 2 runs" in report
    assert Patient.from_csv(out / "patient.csv").data.sizes["obs"] == 13
    assert not list(tmp_path.glob(".example.*"))  # no staging or old folder left behind
