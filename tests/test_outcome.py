"""Exit codes of ``twinbayes run``: all twins converged, one excluded after the ladder, none converged."""

import json
from pathlib import Path

import numpy as np
import pytest

from twinbayes.cli import main
from twinbayes.pipeline import Outcome

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
