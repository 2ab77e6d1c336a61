"""Files from other teams are untrusted: no file written outside, no script in the report,
no data deleted, one failing twin does not take the study down, no identifier in the outputs."""

import json
import subprocess

import pytest

from twinbayes import load_spec
from twinbayes.cli import main
from twinbayes.names import inside
from twinbayes.pipeline import Outcome
from twinbayes.report import _table
from twinbayes.results import MARKER, ResultsFolder
from twinbayes.spec import SpecError

STUDY = """
[study]
name = "{name}"
seed = 1
[patient]
data = "data.csv"
subject = "{subject}"
[twins]
specs = {specs}
[sampler]
draws = 300
tune = 300
chains = 2
"""

PK_DATA = "subject,time,time_unit,event,name,value,unit\n" + "".join(
    f"{s},{r}\n"
    for s in ("Jane Doe",)
    for r in [
        "0,h,dose,iv,25,mg",
        "0.25,h,observation,concentration,1.5,ug/mL",
        "0.5,h,observation,concentration,0.94,ug/mL",
        "1,h,observation,concentration,0.78,ug/mL",
        "1.5,h,observation,concentration,0.48,ug/mL",
        "2,h,observation,concentration,0.37,ug/mL",
        "3,h,observation,concentration,0.19,ug/mL",
        "5,h,observation,concentration,0.12,ug/mL",
        "8,h,observation,concentration,0.11,ug/mL",
    ]
)


def _study(tmp_path, name="s", specs=("pk_1cmt_iv", "pk_2cmt_iv"), subject="Jane Doe", extra=""):
    (tmp_path / "data.csv").write_text(PK_DATA)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(name=name, subject=subject, specs=json.dumps(list(specs))) + extra)
    return path


@pytest.mark.parametrize("name", ["/tmp/X", "../X", "a/b", "", "<img src=x>", "x" * 65, "con\x00"])
def test_spec_and_study_names_cannot_become_paths(tmp_path, name):
    text = load_spec("pk_1cmt_iv").text.replace('name = "pk_1cmt_iv"', f"name = {json.dumps(name)}")
    with pytest.raises(SpecError, match="model.name"):
        load_spec("evil.toml", text=text)
    assert (
        main(
            [
                "run",
                str(_study(tmp_path, name=json.dumps(name)[1:-1])),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )


def test_every_written_path_stays_inside_the_results_folder(tmp_path):
    with pytest.raises(ValueError, match="outside the results folder"):
        inside(tmp_path / "res", "..", "x.nc")
    folder = ResultsFolder.create(tmp_path / "res")
    with pytest.raises(ValueError, match="outside the results folder"):
        folder.figure_path("../../escaped")
    folder.abort()


def test_force_replaces_only_folders_twinbayes_wrote(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    study = _study(tmp_path)
    for out in (victim, afile):
        assert main(["run", str(study), "--out", str(out), "--force", "--quiet"]) == 2
        assert "not a twinbayes results folder" in capsys.readouterr().err
    assert (victim / "thesis.tex").read_text() == "years of work" and afile.read_text() == "keep me"
    assert not list(tmp_path.glob(".*old-*")) and not list(tmp_path.glob(".*partial-*"))
    assert (ResultsFolder.create(tmp_path / "new").staging / MARKER).exists()


def test_report_escapes_every_value():
    evil = "<img src=x onerror=alert(1)>"
    html = _table(["name"], [[evil], ["<script>alert(2)</script>"]])
    assert (
        "<img" not in html
        and "<script>" not in html
        and "&lt;img src=x onerror=alert(1)&gt;" in html
    )


def test_hostile_names_in_a_study_report_run_no_script(tmp_path):
    """Scenario, QoI and target names with markup end up escaped in report.html (no browser check yet)."""
    extra = """
[[scenarios]]
name = "<img src=x onerror=alert(1)>"
route = "iv"
amount = 25
[predictions]
times = { start = 0, stop = 8, step = 1 }
[[qois]]
name = "<script>document.title='pwned'</script>"
kind = "value_at"
at = 4.0
[[targets]]
qoi = "<script>document.title='pwned'</script>"
lower = 0.1
name = "<b onmouseover=alert(3)>t</b>"
"""
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            str(_study(tmp_path, extra=extra)),
            "--out",
            str(out),
            "--quiet",
            "--no-ladder",
            "--include-unconverged",
        ]
    )
    assert rc in (0, 3, 4, 5)
    report = (out / "report.html").read_text()
    for raw in ("<img src=x", "<script>document", "<b onmouseover"):
        assert raw not in report
    assert "&lt;img src=x onerror=alert(1)&gt;" in report


def test_no_identifier_in_any_output(tmp_path):
    """Subject 'Jane Doe': no output file (NetCDF, JSON, text, HTML, PNG, study copy) contains 'Jane'."""
    out = tmp_path / "out"
    rc = main(["run", str(_study(tmp_path)), "--out", str(out), "--quiet", "--no-ladder"])
    assert rc in (0, 3, 4)
    hits = subprocess.run(["grep", "-rl", "Jane", str(out)], capture_output=True, text=True).stdout
    assert hits == ""
    provenance = json.loads((out / "provenance.json").read_text())
    assert (
        provenance["patient"]["id"].startswith("p-") and "/" not in provenance["patient"]["source"]
    )


def test_identifiers_are_kept_on_request(tmp_path):
    study = _study(tmp_path, specs=("pk_1cmt_iv", "pk_2cmt_iv"))
    study.write_text(
        study.read_text().replace(
            'subject = "Jane Doe"', 'subject = "Jane Doe"\nkeep_identifiers = true'
        )
    )
    out = tmp_path / "out"
    main(["run", str(study), "--out", str(out), "--quiet", "--no-ladder", "--no-figures"])
    assert json.loads((out / "provenance.json").read_text())["patient"]["id"] == "Jane Doe"


def test_one_twin_whose_ode_blows_up_does_not_take_the_study_down(tmp_path):
    """rhs.V = a V^2 from V0: no finite initial point.  The other twin's results and the report are complete."""
    blowup = (
        load_spec("tumor_exponential")
        .text.replace('name = "tumor_exponential"', 'name = "blowup"')
        .replace('solution.V = "V0 * exp(a * t)"', 'initial.V = "V0"')
        .replace('rhs.V = "a * V"', 'rhs.V = "a * V * V * 1e6"')
    )
    (tmp_path / "blowup.toml").write_text(blowup)
    from twinbayes.library import data_path

    study = tmp_path / "study.toml"
    study.write_text(
        STUDY.format(
            name="blow", subject="0", specs=json.dumps(["blowup.toml", "tumor_gompertz"])
        ).replace('"data.csv"', json.dumps(str(data_path("benzekry_llc_tumor_volume.csv"))))
    )
    out = tmp_path / "out"
    rc = main(
        ["run", str(study), "--out", str(out), "--quiet", "--no-ladder", "--include-unconverged"]
    )
    assert rc in (
        Outcome.TWIN_FAILED_GATE,
        Outcome.NO_TWIN_CONVERGED,
    )  # the good twin's short chains may miss ESS 400
    summary = json.loads((out / "summary.json").read_text())["twins"]
    assert (
        summary["blowup"]["failed"]
        and "not finite at any initial point" in summary["blowup"]["reasons"][0]
    )
    assert (out / "twins" / "tumor_gompertz.nc").exists() and not (
        out / "twins" / "blowup.nc"
    ).exists()
    report = (out / "report.html").read_text()
    assert "blowup" in report and "not finite at any initial point" in report


@pytest.mark.parametrize(
    "extra, field",
    [
        ('[comparison]\ninclude_unconverged = "false"\n', "comparison.include_unconverged"),
        ("[comparison]\nkfold_k = 1\n", "comparison.kfold_k"),
        ('[gate]\nladder = "yes"\n', "gate.ladder"),
        ('[gate]\nrhat_max = "1.01"\n', "gate.rhat_max"),
        ("[gate]\nmax_divergent = -1\n", "gate.max_divergent"),
        (
            '[[scenarios]]\nname = "x"\nroute = "iv"\namount = 1\ndoses = 1000000000\n[predictions]\ntimes = [1.0]\n',
            "scenarios[0].doses",
        ),
    ],
)
def test_study_values_of_the_wrong_type_are_refused_before_fitting(tmp_path, capsys, extra, field):
    assert main(["run", str(_study(tmp_path, extra=extra)), "--out", str(tmp_path / "o")]) == 2
    assert field in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_infinite_tolerance_and_duplicate_twin_names_are_refused(tmp_path, capsys):
    text = load_spec("glucose_minimal").text.replace("[dynamics]", "[dynamics]\natol = inf", 1)
    with pytest.raises(SpecError, match="dynamics.atol"):
        load_spec("inf.toml", text=text)
    (tmp_path / "copy.toml").write_text(load_spec("pk_1cmt_iv").text)
    assert (
        main(
            [
                "run",
                str(_study(tmp_path, specs=("pk_1cmt_iv", "copy.toml"))),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "both named 'pk_1cmt_iv'" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--draws", "0"), ("--chains", "0"), ("--tune", "-5")])
def test_cli_refuses_non_positive_counts(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        main(["run", str(_study(tmp_path)), "--out", str(tmp_path / "o"), flag, value])
    assert stop.value.code == 2 and "whole number >= 1" in capsys.readouterr().err


def test_a_covariate_given_twice_with_different_values_is_refused(tmp_path):
    from twinbayes import Patient
    from twinbayes.patient import PatientDataError

    path = tmp_path / "p.csv"
    rows = [
        "0,h,covariate,weight,70,kg",
        "0,h,covariate,weight,80,kg",
        "0,h,dose,iv,25,mg",
        "1,h,observation,concentration,1,mg/L",
    ]
    path.write_text("time,time_unit,event,name,value,unit\n" + "\n".join(rows) + "\n")
    with pytest.raises(PatientDataError, match="covariate 'weight' is given twice"):
        Patient.from_csv(path)


def test_observations_the_spec_does_not_know_are_an_error_not_dropped(tmp_path):
    from twinbayes import Patient
    from twinbayes.dynamics.design import design_for
    from twinbayes.patient import PatientDataError

    path = tmp_path / "p.csv"
    rows = [
        "0,h,dose,iv,25,mg",
        "1,h,observation,Concentration,1,mg/L",
        "2,h,observation,concentration,0.5,mg/L",
    ]
    path.write_text("time,time_unit,event,name,value,unit\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        PatientDataError, match=r"observations \['Concentration'\] that spec 'pk_1cmt_iv' neither"
    ):
        design_for(load_spec("pk_1cmt_iv"), Patient.from_csv(path))


@pytest.mark.parametrize("depth, fn", [(100, "max"), (150, "sigmoid")])
def test_deeply_nested_expressions_are_refused_at_once(depth, fn):
    """800 characters of nested max() used to take 409 s and 4.5 GB to compile; now a clear error."""
    import time

    from twinbayes.spec.expr import ExpressionError, compile_expression

    text = f"{fn}(" * depth + "a" + (", 1)" if fn == "max" else ")") * depth
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError, match="nested deeper than 32 levels"):
        compile_expression(text, {"a"}, "dynamics.rhs.x")
    assert time.perf_counter() - t0 < 1.0
