"""Exit codes of ``twinbayes run``: all twins converged, one excluded after the ladder, none converged."""

import json
from pathlib import Path

import numpy as np
import pytest

from twinbayes.run.cli import main
from twinbayes.run.pipeline import Outcome

SIGN_SPEC = (Path(__file__).parent / "data" / "sign_symmetric.toml").read_text()

LEVEL_SPEC = SIGN_SPEC.replace('name = "sign_symmetric"', 'name = "level"').replace(
    'solution.x = "a * a + 0 * t"', 'solution.x = "a + 0 * t"'
)
TREND_SPEC = (
    LEVEL_SPEC.replace('name = "level"', 'name = "trend"').replace(
        'solution.x = "a + 0 * t"', 'solution.x = "a + b * (t - 4.5)"'
    )
    + '\n[parameters.b]\ndescription = "slope"\nunit = "1/h"\nprior = { distribution = "normal", mu = 0.0, sigma = 1.0 }\n'
)

STUDY = """
[study]
name = "outcome"
seed = 3
[patient]
data = "data.csv"
[twins]
specs = {specs}
[sampler]
draws = 1000
tune = 300
chains = 8
[gate]
ess_bulk_min = 100
ess_tail_min = 100
"""


def _run(tmp_path, specs: dict[str, str]) -> tuple[int, dict]:
    rows = ["subject,time,time_unit,event,name,value,unit"]
    y = 25.0 + 0.1 * np.random.default_rng(0).standard_normal(8)
    rows += [f"1,{t},h,observation,y,{v},1" for t, v in zip(range(1, 9), y)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    for name, text in specs.items():
        (tmp_path / f"{name}.toml").write_text(text)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(specs=json.dumps([f"{n}.toml" for n in specs])))
    rc = main(["run", str(study), "--out", str(tmp_path / "out"), "--quiet", "--no-figures"])
    return rc, json.loads((tmp_path / "out" / "summary.json").read_text())


@pytest.mark.parametrize(
    "specs, code",
    [
        ({"level": LEVEL_SPEC, "trend": TREND_SPEC}, Outcome.OK),
        ({"level": LEVEL_SPEC, "sign": SIGN_SPEC}, Outcome.TWIN_FAILED_GATE),
        (
            {"sign": SIGN_SPEC, "sign_b": SIGN_SPEC.replace('"sign_symmetric"', '"sign_b"')},
            Outcome.NO_TWIN_CONVERGED,
        ),
    ],
    ids=["all-converged", "one-excluded", "none-converged"],
)
def test_exit_codes(tmp_path, specs, code):
    rc, summary = _run(tmp_path, specs)
    assert rc == code and summary["outcome"]["code"] == code
    for name, twin in summary["twins"].items():
        if "sign" in name:  # the ladder ran to its end before excluding it
            assert not twin["converged"] and len(twin["gate_attempts"]) == 3
        else:
            assert twin["converged"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert ("Outcome " in report) == (code != Outcome.OK)


PK_STUDY = """
[study]
name = "pk-exclusion"
seed = 2
[patient]
data = "bundled:indometacin.csv"
subject = "1"
[twins]
specs = ["pk_1cmt_iv", "pk_sign.toml"]
[sampler]
draws = 1000
tune = 500
chains = 8
[[scenarios]]
name = "25 mg once"
route = "iv"
amount = 25
[[scenarios]]
name = "50 mg once"
route = "iv"
amount = 50
[predictions]
times = { start = 0, stop = 8, step = 0.5 }
[[qois]]
name = "C4"
kind = "value_at"
at = 4.0
[[targets]]
qoi = "C4"
lower = 0.2
"""


def _pk_sign_spec() -> str:
    """pk_1cmt_iv with CL = c^2 and a symmetric prior on c: the sign of c is not identified."""
    from twinbayes import load_spec

    text = load_spec("pk_1cmt_iv").text.replace('name = "pk_1cmt_iv"', 'name = "pk_sign"')
    text = text.replace(
        '[parameters.CL]\ndescription = "clearance"\nunit = "L/h"\nprior = { distribution = "lognormal", mu = 1.6, sigma = 1.0 }',
        '[parameters.c]\ndescription = "square root of clearance"\nunit = "1"\nprior = { distribution = "normal", mu = 0.0, sigma = 3.0 }',
    )
    return text.replace(
        "[derived.ke]",
        '[derived.CL]\nexpression = "c * c"\nunit = "L/h"\ndescription = "clearance"\n\n[derived.ke]',
    )


def test_excluded_twin_is_named_next_to_the_share(tmp_path, capsys):
    from twinbayes.output.plots import plot_disagreement_over_time
    from twinbayes.output.report import write_report
    from twinbayes.run.pipeline import run_study
    from twinbayes.run.study import load_study

    (tmp_path / "pk_sign.toml").write_text(_pk_sign_spec())
    (tmp_path / "study.toml").write_text(PK_STUDY)
    result = run_study(
        load_study(tmp_path / "study.toml"), tmp_path / "out", progress=False, figures=False
    )
    assert result.outcome == Outcome.TWIN_FAILED_GATE
    assert [t.converged for t in result.twins] == [True, False] and len(
        result.twins[1].attempts
    ) == 3
    printed = capsys.readouterr().out
    assert "ladder exhausted: pk_sign is excluded" in printed
    assert (
        "excluded from the ensemble (failed the convergence gate): pk_sign" in printed
        and "n/a" in printed
    )
    d = result.disagreement.data
    assert np.isnan(d.qoi_between_share).all() and d.attrs["excluded"] == "pk_sign"
    assert (
        "excluded (failed the gate): pk_sign"
        in plot_disagreement_over_time(result.disagreement).axes[0].get_title()
    )
    report = (tmp_path / "out" / "report.html").read_text()
    assert "excluded from the ensemble (failed the convergence gate): pk_sign" in report
    # the run's report (from the data just written) is the one read back from the files
    assert write_report(tmp_path / "out").read_text() == report
    assert "ladder exhausted, twin excluded" in report


def test_scenarios_are_not_simulated_for_twins_that_cannot_get_weight(tmp_path, monkeypatch):
    """No twin passed its gate: the scenarios are skipped (with the reason), never simulated."""
    from dataclasses import replace
    from types import SimpleNamespace

    from twinbayes.run import pipeline
    from twinbayes.run.study import load_study

    (tmp_path / "pk_sign.toml").write_text(_pk_sign_spec())
    (tmp_path / "study.toml").write_text(PK_STUDY)
    study = load_study(tmp_path / "study.toml")
    simulated = []
    monkeypatch.setattr(pipeline, "simulate", lambda twins, *a, **k: simulated.append(twins))
    failed = [SimpleNamespace(converged=False, name=n) for n in ("a", "b")]
    run = pipeline.Run(study, quiet=True)
    assert pipeline._simulate(run, failed) is None and not simulated
    assert pipeline._scenarios(run, failed, None, None, None) is None
    skipped = run.skipped
    assert skipped == [
        "scenarios skipped: no twin has ensemble weight (none passed its convergence gate)"
    ]
    passed = [SimpleNamespace(converged=True, name="c"), *failed]
    pipeline._simulate(run, passed)
    opted_in = replace(study, comparison={**study.comparison, "include_unconverged": True})
    pipeline._simulate(pipeline.Run(opted_in, quiet=True), failed)
    assert simulated == [passed, failed]
