"""Input files as an attacker, a careless colleague or a bad day shape them (issue 42): another
patient's data in a bundle, devices and FIFOs as data, physically impossible covariates, a
cohort with one subject that cannot be fitted, and the inputs that used to end in a traceback.
Every one ends as a twinbayes error (exit 2, file, field and fix named), fast."""

import json
import os
import threading
import warnings

import pytest
from test_fhir import VALID, _bundle, _dose, _obs, _request
from test_untrusted import PK_DATA, pk_study

from twinbayes import Patient, load_spec
from twinbayes.error import TwinbayesError
from twinbayes.inputs.fhir import read_bundle, read_requests
from twinbayes.inputs.patient import PatientDataError
from twinbayes.run.cli import main
from twinbayes.spec import SpecError


def _other_patients(bundle: dict, ref: str) -> dict:
    bundle = json.loads(json.dumps(bundle))
    bundle["entry"][2]["resource"]["subject"] = {"reference": ref}
    return bundle


@pytest.mark.parametrize("ref", ["Patient/someone-else", "urn:uuid:1234", "Patient/x/_history/2"])
def test_a_bundle_resource_about_another_patient_is_refused(ref):
    """main ee96226 read another patient's Observations as this patient's (22 levels instead of 11)."""
    with pytest.raises(PatientDataError, match="refers to another patient") as err:
        read_bundle(_other_patients(VALID, ref))
    assert "someone-else" not in str(err.value) and "Observation/o1.subject" in str(err.value)


def test_resources_of_the_bundles_patient_are_read():
    for ref in ("Patient/x", "http://hospital.example/fhir/Patient/x"):
        assert read_bundle(_other_patients(VALID, ref)).id == "x"
    with_url = json.loads(json.dumps(VALID))
    with_url["entry"][0]["fullUrl"] = "urn:uuid:abc"
    assert read_bundle(_other_patients(with_url, "urn:uuid:abc")).id == "x"


def test_without_a_patient_resource_all_subjects_must_agree():
    bundle = _bundle(_dose("d1", "2024-03-01T08:00:00Z"), _obs("o1", "2024-03-01T10:00:00Z", 4.1))
    bundle["entry"][0]["resource"]["subject"] = {"reference": "Patient/a"}
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/b"}
    with pytest.raises(PatientDataError, match="refers to another patient"):
        read_bundle(bundle)


def test_a_request_for_another_patient_is_refused():
    bundle = _bundle({"resourceType": "Patient", "id": "x"}, _request(count=2))
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/y"}
    with pytest.raises(PatientDataError, match="refers to another patient"):
        read_requests(bundle)


@pytest.mark.parametrize("kind", ["/dev/zero", "link to /dev/zero", "fifo", "folder"])
def test_devices_fifos_and_folders_are_refused_before_reading(tmp_path, kind, capsys):
    """/dev/zero was read whole before its size was checked, a FIFO hung the run."""
    data = tmp_path / "device.csv"
    if kind == "/dev/zero":
        data = "/dev/zero"
    elif kind == "link to /dev/zero":
        data.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(data)
    else:
        data.mkdir()
    done = threading.Event()
    threading.Timer(10, lambda: done.is_set() or os.kill(os.getpid(), 9)).start()
    try:
        for args in (["patient", "check", str(data)], ["patient", "check", "--fhir", str(data)]):
            assert main(args) == 2
            assert "not a regular file" in capsys.readouterr().err
        study = pk_study(tmp_path, specs=("pk_1cmt_iv",))
        study.write_text(study.read_text().replace('data = "data.csv"', f'data = "{data}"'))
        assert main(["run", str(study), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        assert "not a regular file" in capsys.readouterr().err
        assert main(["specs", "check", str(data)]) == 2
    finally:
        done.set()


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [("weight", "-1.5", "> 0"), ("WT", "0", "> 0"), ("age", "-3", ">=0"), ("crcl", "-10", "> 0")],
)
def test_physically_impossible_covariates_are_refused_on_reading(tmp_path, name, value, rule):
    """A body weight of -1.5 kg was accepted and the phenobarbital twin reported V = -0.32 L."""
    path = tmp_path / "p.csv"
    path.write_text(
        "time,time_unit,event,name,value,unit\n"
        f"0,h,covariate,{name},{value},kg\n0,h,dose,iv,10,mg\n1,h,observation,c,1,mg/L\n"
    )
    with pytest.raises(PatientDataError) as err:
        Patient.from_csv(path)
    message = str(err.value)
    assert f"{path}, line 2, column 'value'" in message and value in message and rule in message


def test_a_spec_declares_a_covariates_range_and_defaults_by_unit(tmp_path):
    from twinbayes.dynamics.design import design_for

    base = load_spec("pk_1cmt_iv").text
    spec_text = base + '\n[covariates.score]\nunit = "1"\ndescription = "s"\nreference = 3\n'
    spec_text += "range = [0, 10]\n"
    spec_text += '[covariates.lbm]\nunit = "kg"\ndescription = "lean body mass"\nreference = 50\n'
    spec = load_spec("ranged.toml", text=spec_text)
    assert spec.covariates["lbm"].check(0.0) and not spec.covariates["lbm"].check(50.0)
    assert spec.covariates["score"].check(11.0) and not spec.covariates["score"].check(0.0)
    rows = "time,time_unit,event,name,value,unit\n0,h,dose,iv,25,mg\n1,h,observation,concentration,1,ug/mL\n"
    (tmp_path / "p.csv").write_text(rows + "0,h,covariate,score,12,1\n0,h,covariate,lbm,40,kg\n")
    with pytest.raises(
        PatientDataError, match=r"'score'.*outside its physical range.*covariates.score"
    ):
        design_for(spec, Patient.from_csv(tmp_path / "p.csv"))
    with pytest.raises(SpecError, match="covariates.lbm.reference"):
        load_spec("bad.toml", text=spec_text.replace("reference = 50", "reference = -1"))
    with pytest.raises(SpecError, match="covariates.score.range"):
        load_spec("bad.toml", text=spec_text.replace("range = [0, 10]", "range = [10, 0]"))


def test_a_cohort_leaves_out_a_subject_that_cannot_be_fitted(tmp_path):
    """One subject without observations stopped a whole cohort, its raw id in the message."""
    from twinbayes.inputs.privacy import pseudonym
    from twinbayes.run.cohort import CohortWarning, cohort_tasks

    rows = PK_DATA.replace("Jane Doe", "A") + PK_DATA.replace("Jane Doe", "B").split("\n", 1)[1]
    rows += "Smith John,0,h,dose,iv,25,mg,MRN-1,x,y\n"  # a dose, no observation
    (tmp_path / "cohort.csv").write_text(rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = cohort_tasks(tmp_path / "cohort.csv", ["pk_1cmt_iv"])
    assert [t.subject for t in tasks] == ["A", "B"]
    assert list(tasks.unfittable) == [pseudonym("Smith John")]
    assert "no observations" in tasks.unfittable[pseudonym("Smith John")]
    said = " ".join(str(w.message) for w in caught if w.category is CohortWarning)
    assert pseudonym("Smith John") in said and "Smith" not in said and str(tmp_path) not in said


BIG_INT = "1" * 4400


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("json integer of 4400 digits", None),
        ("UCUM 10*999", "10*999.g/L"),
        ("UCUM power of 5000 digits", "m" + "9" * 5000),
        ("UCUM g99", "g99/L"),
    ],
)
def test_numbers_too_large_for_a_float_are_input_errors(tmp_path, what, text, capsys):
    if text is None:
        (tmp_path / "b.json").write_text('{"resourceType": "Bundle", "total": ' + BIG_INT + "}")
        args = ["patient", "check", "--fhir", str(tmp_path / "b.json")]
    else:
        (tmp_path / "p.csv").write_text(
            "time,time_unit,event,name,value,unit\n0,h,dose,iv,25,mg\n"
            f"1,h,observation,concentration,1,{text}\n"
        )
        args = ["patient", "check", str(tmp_path / "p.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("twinbayes: error:")


@pytest.mark.parametrize(
    ("repeat", "message"),
    [
        ({"boundsDuration": {"value": 1e308, "code": "d"}}, "too long a time"),
        ({"boundsDuration": {"value": 1e308, "code": "h"}}, "doses; a scenario takes"),
    ],
)
def test_request_durations_beyond_any_regimen_are_refused(repeat, message):
    with pytest.raises(PatientDataError, match=message):
        read_requests(_bundle(_request(**repeat)))


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ('expression = "central / V"', "constant too large"),
        ('expression = "central / V"', "not finite"),
        ('name = "pk_1cmt_iv"', "is not a valid"),
    ],
)
def test_spec_values_that_used_to_fold_or_overflow_are_refused(replace, message):
    new = {
        "constant too large": 'expression = "central / V * ' + "9" * 400 + '"',
        "not finite": 'expression = "central / V * (1e308 * 10)"',
        "is not a valid": 'name = "pk_1cmt_iv\\n"',
    }[message]
    text = load_spec("pk_1cmt_iv").text
    assert replace in text
    with pytest.raises(SpecError, match=message):
        load_spec("x.toml", text=text.replace(replace, new))


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ("{ start = 0, stop = 1e6, step = 1e-6 }", "more than 20000"),
        ("{ start = 0, stop = 10, step = 0 }", "positive number"),
        ('{ start = "0", stop = 10, step = 1 }', "must be a number"),
        ("{ start = 10, stop = 0, step = 1 }", "must not be before start"),
        ("[0, 1e400]", "finite numbers"),
    ],
)
def test_prediction_grids_are_bounded_before_they_are_made(tmp_path, times, message, capsys):
    """A step of 1e-6 over 1e6 asked numpy for 7 TiB."""
    extra = f"[predictions]\ntimes = {times}\n"
    study = pk_study(tmp_path, specs=("pk_1cmt_iv",), extra=extra)
    assert main(["run", str(study), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "predictions.times" in err and message in err


@pytest.mark.parametrize("name", ["../../../etc/hostname", "/etc/hostname", ".hidden", "a/b.csv"])
def test_bundled_names_are_plain_file_names(name, capsys):
    assert main(["patient", "check", f"bundled:{name}"]) == 2
    assert "no bundled data file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        load_spec(f"bundled:{name}")


def test_every_input_error_is_a_twinbayes_error():
    from twinbayes.inputs.units import UnitError
    from twinbayes.output.results import OutputError
    from twinbayes.spec.expr import ExpressionError

    for error in (SpecError, PatientDataError, OutputError, UnitError, ExpressionError):
        assert issubclass(error, TwinbayesError)
