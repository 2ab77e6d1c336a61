"""twinbayes: Bayesian comparison of patient digital twins.

The light parts (specs, patient data, units) import at once; the inference
parts (PyMC, ArviZ) are imported when first used, so ``twinbayes specs`` and
``twinbayes patient`` stay fast.
"""

from importlib import import_module

from .patient import Patient, PatientDataError
from .spec import ModelSpec, SpecError, load_spec
from .units import UnitError

__version__ = "0.1.0"

_LAZY = {
    "fit": "fit",
    "Twin": "fit",
    "Gate": "diagnostics",
    "compare": "compare",
    "Comparison": "compare",
    "average_predictive": "ensemble",
    "predictive_draws": "ensemble",
    "Scenario": "scenarios",
    "Dose": "scenarios",
    "Target": "qoi",
    "disagreement": "disagreement",
    "Disagreement": "disagreement",
    "load_study": "study",
    "run_study": "pipeline",
    "simulate_patient": "simulate",
}

__all__ = [
    "Patient",
    "PatientDataError",
    "ModelSpec",
    "SpecError",
    "load_spec",
    "UnitError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'twinbayes' has no attribute {name!r}")
