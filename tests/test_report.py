"""The report's answer in words: the preferred scenario, who disagrees, and the numbers behind it."""

import re

import numpy as np
from test_disagreement import GRID, synthetic_twin

from twinbayes.decisions.twin_disagreement import disagreement
from twinbayes.output.report import answers
from twinbayes.spec.qoi import Target, ValueAt
from twinbayes.spec.scenarios import Scenario

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


def _decision(p_meets, equal, excluded=""):
    """A disagreement dataset as the answer box reads it: sources a, b, mm (and the ensemble)."""
    import xarray as xr

    sources, scenarios = ["lin", "mm1", "mm2", "ensemble"], ["100 mg q8h", "150 mg q8h"]
    p = np.array(p_meets)[:, :, None]
    best = np.array(scenarios)[p.argmax(axis=1)]
    d = xr.Dataset(
        {
            "p_meets": (("source", "scenario", "target"), p),
            "p_meets_mcse": (("source", "scenario", "target"), np.where(p % 1 == 0, 0.0, 0.01)),
            "best_scenario": (("source", "target"), best),
            "p_meets_ensemble_q05": (("scenario", "target"), p[-1]),
            "p_meets_ensemble_q95": (("scenario", "target"), p[-1]),
            "p_meets_equal": (("scenario", "target"), np.array(equal)[:, None]),
            "p_recommend_differently": (("target",), [1.0]),
            "p_ensemble_choice_changes": (("target",), [0.0]),
        },
        coords={"source": sources, "scenario": scenarios, "target": ["trough"]},
        attrs={"excluded": excluded, "n_ensemble": 3 - bool(excluded)},
    )
    return answers(d, {})[0]


def test_the_answer_says_when_the_choice_depends_on_which_twin_is_believed():
    """The newcomer's case of issue 36: stacking weight 1 on the linear twin gives P = 1 for
    100 mg q8h, both saturable twins and equal weights prefer 150 mg; an excluded twin is named as
    excluded, never as the twin that disagrees; a P of 1 from draws that all agree has no MCSE."""
    a = _decision(
        [[1.0, 0.9], [0.09, 0.5], [0.24, 0.6], [1.0, 0.9]], equal=[0.44, 0.67], excluded="mm2"
    )
    text = " ".join([a.verdict, *a.lines])
    assert "mm1 prefers 150 mg q8h" in a.verdict and "mm2" not in a.verdict
    assert "The choice depends on which twin is believed: with equal weights" in text
    assert "it would be 150 mg q8h" in text
    assert "Excluded (failed its convergence gate; no vote, no weight): mm2" in text
    assert "1.00 (MCSE not estimable)" in text and "± 0.00" not in text
    agree = _decision(
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.1], [0.85, 0.15]], equal=[0.8, 0.13], excluded=""
    )
    assert "depends on which twin" not in " ".join(agree.lines)


def test_when_no_twin_fits_the_headline_says_so_instead_of_a_preference():
    """Issue 43: every voting twin with a misfit warning -> no twin supports the answer."""
    from twinbayes.output.report import misfitting_twins

    d = _result({"a": 0.7, "b": 0.3})
    summary = {
        "a": {"warnings": ["misfit: trend over time of C (posterior predictive p = 0.001)"]},
        "b": {
            "warnings": [
                "misfit: runs of residual signs of C (p = 0.004)",
                "prior-data conflict: x",
            ]
        },
    }
    assert misfitting_twins(summary) == {"a", "b"}
    (answer,) = answers(d, STUDY, misfitting_twins(summary))
    assert answer.verdict.startswith("No twin fits this patient's data (a, b: each failed")
    assert "ensemble's choice" not in answer.verdict
    summary["b"]["warnings"] = summary["b"]["warnings"][1:]  # b fits: it supports an answer
    (answer,) = answers(d, STUDY, misfitting_twins(summary))
    assert answer.verdict.startswith("C6 in 0.1-1.5: 50 mg is the ensemble's choice")


def test_a_decision_read_after_the_last_level_is_called_an_extrapolation():
    """Issue 43: the answer box says when the target's QoI lies beyond every level."""
    d = _result({"a": 0.7, "b": 0.3})
    study = {**STUDY, "qois": [{"name": "C6", "kind": "value_at", "at": 6.0}]}
    (answer,) = answers(d, study, last_obs=(4.0, "h"))
    line = answer.lines[0]
    assert line.startswith("This decision is an extrapolation: 'C6' is read at t = 6 h, 2 h after")
    for last in (6.0, 8.0, None):  # a level at or after the QoI's time, or no history
        (answer,) = answers(d, study, last_obs=None if last is None else (last, "h"))
        assert not any("extrapolation" in x for x in answer.lines)
