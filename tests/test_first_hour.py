"""What a newcomer meets first: CLI messages, bundled data, units, study checks before fitting."""

import pytest

import twinbayes.fitting.twin
from twinbayes.comparison import compare
from twinbayes.inputs.patient import Patient, PatientDataError
from twinbayes.inputs.units import conversion_factor
from twinbayes.run.cli import main
from twinbayes.run.pipeline import run_study
from twinbayes.run.study import load_study
from twinbayes.spec import SpecError

BAD_ROUTE = """
[study]
name = "bad-route"
seed = 1

[patient]
data = "bundled:theophylline.csv"
subject = "1"

[twins]
specs = ["pk_1cmt_oral", "pk_2cmt_iv"]

[[scenarios]]
name = "oral 320 mg"
route = "po"
amount = 320

[predictions]
times = { start = 0, stop = 24, step = 1 }
"""


def test_a_bad_scenario_route_fails_before_any_fit(tmp_path, monkeypatch, capsys):
    def no_fit(*args, **kwargs):
        raise AssertionError("a twin was fitted before the study was checked")

    monkeypatch.setattr(twinbayes.fitting.twin, "fit", no_fit)
    monkeypatch.setattr("twinbayes.run.pipeline.fit", no_fit)
    path = tmp_path / "study.toml"
    path.write_text(BAD_ROUTE)
    with pytest.raises(SpecError) as err:
        run_study(load_study(path), quiet=True)
    text = str(err.value)
    assert str(path) in text and "scenarios[0]" in text and "'oral 320 mg'" in text
    assert "'po'" in text
    assert "pk_1cmt_oral: oral (mg)" in text and "pk_2cmt_iv: iv (mg)" in text
    assert main(["run", str(path), "--out", str(tmp_path / "res"), "--quiet"]) == 2
    assert "scenarios[0]" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_patient_check_reads_bundled_files(capsys):
    assert main(["patient", "check", "bundled:theophylline.csv", "--subject", "1"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "observations concentration: 11" in out


def test_cli_errors_name_cli_flags(capsys):
    assert main(["patient", "check", "bundled:theophylline.csv"]) == 2
    assert "--subject" in capsys.readouterr().err


def test_the_comparison_error_names_the_flag_and_the_study_field():
    class Unconverged:
        converged = False
        name = "a"

    with pytest.raises(ValueError) as err:
        compare([Unconverged(), Unconverged()])
    assert "--include-unconverged" in str(err.value) and "[comparison]" in str(err.value)


def test_a_file_without_subject_column_is_one_patient(tmp_path, capsys):
    p = tmp_path / "one.csv"
    p.write_text(
        "time,time_unit,event,name,value,unit\n0,h,dose,oral,100,mg\n1,h,observation,concentration,2.5,mg/l\n"
    )
    assert main(["patient", "check", str(p)]) == 0
    assert "no subject column" in capsys.readouterr().out


@pytest.mark.parametrize(("lower", "upper"), [("mg/l", "mg/L"), ("ml", "mL"), ("ug/dl", "ug/dL")])
def test_ucum_litre_may_be_written_l_or_L(lower, upper):
    assert conversion_factor(lower, upper) == 1.0


def test_unknown_bundled_file_is_a_clear_error():
    with pytest.raises(PatientDataError, match="no bundled data file"):
        Patient.from_csv("bundled:nope.csv")


def test_a_dose_unit_that_is_not_text_is_named_when_the_study_loads(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(BAD_ROUTE.replace('route = "po"', 'route = "oral"\nunit = 5'))
    with pytest.raises(SpecError) as err:
        load_study(path)
    text = str(err.value)
    assert str(path) in text and "scenarios[0].unit" in text and 'in quotes such as "' in text
