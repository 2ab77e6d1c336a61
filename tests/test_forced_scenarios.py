"""Scenarios on forced twins: a study changes the series that drives them, checked before any fit."""

import pytest

import twinbayes.run.pipeline
from twinbayes import load_study, run_study
from twinbayes.spec import SpecError

STUDY = """
[study]
name = "ivgtt-insulin"
seed = 1
[patient]
data = "bundled:ivgtt_pacini_bergman_1986.csv"
[twins]
specs = ["glucose_minimal", "glucose_minimal_delay"]
{scenarios}
[predictions]
times = {{ start = 8, stop = {stop}, step = 2 }}
"""

HALVED = '[[scenarios]]\nname = "insulin halved"\nseries.insulin = { scale = 0.5 }\n'
CLAMP = (
    '[[scenarios]]\nname = "clamp"\ntime_unit = "min"\n'
    'series.insulin = { times = [0, 300], values = [80, 80], unit = "uU/mL" }\n'
)


class Fitted(Exception):
    """Raised instead of fitting: every check before the fits passed."""


def _checked(tmp_path, monkeypatch, scenarios: str, stop: int = 180):
    def no_fit(*args, **kwargs):
        raise Fitted

    monkeypatch.setattr(twinbayes.run.pipeline, "_fit_all", no_fit)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(scenarios=scenarios, stop=stop))
    run_study(load_study(path), quiet=True)


def test_a_scaled_and_a_given_series_pass_the_checks(tmp_path, monkeypatch):
    with pytest.raises(Fitted):
        _checked(tmp_path, monkeypatch, HALVED + CLAMP)
    study = load_study(tmp_path / "study.toml")
    assert [s.name for s in study.scenarios] == ["insulin halved", "clamp"]
    assert study.scenarios[1].series[0].values == (80.0, 80.0)


def test_a_series_that_drives_no_twin_is_refused_before_any_fit(tmp_path, monkeypatch):
    bad = '[[scenarios]]\nname = "x"\nseries.glucagon = { scale = 2 }\n'
    with pytest.raises(SpecError, match=r"scenarios\[0\].series.*'glucagon'.*drives no input"):
        _checked(tmp_path, monkeypatch, bad)


def test_predictions_beyond_the_measured_series_are_refused_before_any_fit(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match=r"insulin halved.*known from 0 to 182.*reach 240"):
        _checked(tmp_path, monkeypatch, HALVED, stop=240)
    with pytest.raises(Fitted):  # a scenario that gives the series to 300 min may predict to 240
        _checked(tmp_path, monkeypatch, CLAMP, stop=240)


@pytest.mark.parametrize(
    ("series", "field", "message"),
    [
        ("{ times = [0, 0], values = [1, 2], unit = 'uU/mL' }", "series.insulin", "increase"),
        ("{ times = [0, 10], values = [1, 2] }", "series.insulin", "need a unit"),
        ("{ scale = -1 }", "series.insulin", ">= 0"),
        ("{ scale = 1, shift = 2 }", "series.insulin", "unknown field"),
        (
            "{ times = [0, 'a'], values = [1, 2], unit = 'uU/mL' }",
            "series.insulin.times",
            "numbers",
        ),
        ("{ times = [0, 10], values = [1, 2], unit = 'kg' }", "series", "kg"),
    ],
)
def test_bad_series_name_the_field(tmp_path, monkeypatch, series, field, message):
    bad = f'[[scenarios]]\nname = "x"\nseries.insulin = {series}\n'
    with pytest.raises(SpecError) as err:
        _checked(tmp_path, monkeypatch, bad)
    assert f"scenarios[0].{field}" in str(err.value) and message in str(err.value)
    assert str(tmp_path / "study.toml") in str(err.value)


def test_a_scenario_time_unit_must_be_one(tmp_path, monkeypatch):
    bad = '[[scenarios]]\nname = "x"\ntime_unit = "kg"\nseries.insulin = { scale = 2 }\n'
    with pytest.raises(SpecError, match=r"scenarios\[0\].time_unit: must be a unit of time"):
        _checked(tmp_path, monkeypatch, bad)
