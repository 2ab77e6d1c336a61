"""The public API of twinbayes/__init__.py: every name stays what the docs say it is."""

import importlib
import inspect
import pkgutil

import pytest

import twinbayes as tb
from twinbayes.spec.qoi import __all__ as qoi_names

EXPECTED_KIND = {
    "fit": "function",
    "compare": "function",
    "disagreement": "function",
    "load_spec": "function",
    "load_study": "function",
    "run_study": "function",
    "simulate_patient": "function",
    "average_predictive": "function",
    "predictive_draws": "function",
    "fit_population": "function",
    "Twin": "class",
    "PopulationFit": "class",
    "Gate": "class",
    "Comparison": "class",
    "Scenario": "class",
    "Dose": "class",
    "SeriesChange": "class",
    "Target": "class",
    **{q: "class" for q in qoi_names},  # Target and the kinds of QoI
    "Disagreement": "class",
    "Patient": "class",
    "ModelSpec": "class",
    "PatientDataError": "class",
    "SpecError": "class",
    "UnitError": "class",
}


def _kind(value) -> str:
    if inspect.isclass(value):
        return "class"
    if inspect.isfunction(value):
        return "function"
    return type(value).__name__


def test_every_public_name_is_documented_here():
    assert set(tb.__all__) - {"__version__"} == set(EXPECTED_KIND)


def test_public_names_stay_functions_and_classes_after_every_submodule_is_imported():
    """Importing ``twinbayes.fit`` used to replace the function ``tb.fit`` by the module."""
    for _ in range(2):
        for name, kind in EXPECTED_KIND.items():
            assert _kind(getattr(tb, name)) == kind, name
        for module in pkgutil.walk_packages(tb.__path__, prefix="twinbayes."):
            importlib.import_module(module.name)
    for name, kind in EXPECTED_KIND.items():
        value = getattr(tb, name)
        assert _kind(value) == kind, name
        assert value.__module__.startswith("twinbayes."), name


def test_no_submodule_is_named_like_a_public_name():
    submodules = {m.name for m in pkgutil.iter_modules(tb.__path__)}
    assert not submodules & set(tb.__all__)


def test_unknown_names_are_an_attribute_error():
    with pytest.raises(AttributeError):
        tb.no_such_thing
