"""The report's answer in words: the preferred scenario, who disagrees, and the numbers behind it."""

import re

import numpy as np
from test_disagreement import GRID, synthetic_twin

from twinbayes.qoi import Target, ValueAt
from twinbayes.report import answers
from twinbayes.scenarios import Scenario
from twinbayes.twin_disagreement import disagreement

STUDY = {"targets": [{"name": "C6 in 0.1-1.5", "qoi": "C6"}]}


def _result(weights):
    """Twin a (CL 3, V 10) reaches C(6 h) in 0.1-1.5 with 50 mg but not 200 mg; twin b (CL 8) the reverse."""
    a, b = synthetic_twin("a", 3.0, seed=1), synthetic_twin("b", 8.0, seed=2)
    c6 = ValueAt(6.0, name="C6")
    return disagreement(
        [a, b],
        weights,
        [Scenario.regimen("50 mg", 50, "iv"), Scenario.regimen("200 mg", 200, "iv")],
        GRID,
        qois=[c6],
        targets=[Target(c6, lower=0.1, upper=1.5, name="C6 in 0.1-1.5")],
        seed=3,
    ).data


def test_the_answer_names_the_choice_and_who_disagrees():
    d = _result({"a": 0.7, "b": 0.3})
    (answer,) = answers(d, STUDY)
    assert answer.verdict.startswith("C6 in 0.1-1.5: 50 mg is the ensemble's choice")
    assert "b prefers 200 mg" in answer.verdict and "a prefers" not in answer.verdict
    first = answer.lines[0]
    pa, pb = (float(d.p_meets.sel(source=s, scenario="50 mg").squeeze()) for s in "ab")
    assert pa > 0.95 and pb < 0.05  # the closed forms: C(6) = D/V exp(-6 CL/V), 0.83 and 0.04 mg/L
    assert f"{min(pa, pb):.2f}-{max(pa, pb):.2f} across twins" in first
    ensemble = float(re.search(r"ensemble (\d\.\d\d)", first).group(1))
    assert abs(ensemble - (0.7 * pa + 0.3 * pb)) < 0.006  # the mixture, to the 2 printed digits
    assert not any(
        line.startswith("Compared with") for line in answer.lines
    )  # 50 mg is the reference
    assert "Share of the uncertainty in 'C6'" in answer.lines[1]


def test_agreement_is_said_plainly():
    d = _result({"a": 1.0, "b": 0.0})
    d = d.copy()
    d["best_scenario"][:] = "50 mg"  # as if both twins preferred the same scenario
    (answer,) = answers(d, STUDY)
    assert answer.verdict == "C6 in 0.1-1.5: 50 mg. All twins and the ensemble prefer it"
    assert np.isnan(float(d.qoi_between_share.sel(scenario="50 mg").squeeze()))
    assert "n/a" in answer.lines[1]  # one twin in the ensemble: no share, not 0
