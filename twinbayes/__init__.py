"""twinbayes: Bayesian comparison of patient digital twins.

The light parts (specs, patient data, units) import at once; the inference
parts (PyMC, ArviZ) are imported when first used, so ``twinbayes specs`` and
``twinbayes patient`` stay fast.  Importing twinbayes changes nothing process-wide: the
import-time workarounds of :mod:`twinbayes.fitting.compile.import_speed` run only in the processes twinbayes owns
(the ``twinbayes`` command and its compile-ahead worker).
"""

from importlib import import_module

from .inputs.patient import Patient, PatientDataError
from .inputs.units import UnitError
from .spec import ModelSpec, SpecError, load_spec
from .spec.qoi import __all__ as _QOI_NAMES

__version__ = "0.1.0"

_LAZY = {
    "fit": "fitting.twin",
    "Twin": "fitting.twin",
    "Gate": "fitting.diagnostics",
    "compare": "comparison",
    "Comparison": "comparison",
    "average_predictive": "decisions.ensemble",
    "predictive_draws": "fitting.predictive",
    "Scenario": "spec.scenarios",
    "Dose": "spec.scenarios",
    "SeriesChange": "spec.scenarios",
    **{name: "spec.qoi" for name in _QOI_NAMES},  # Target and every kind of QoI
    "disagreement": "decisions.twin_disagreement",
    "Disagreement": "decisions.twin_disagreement",
    "load_study": "run.study",
    "run_study": "run.pipeline",
    "simulate_patient": "model.simulate",
    "fit_population": "fitting.population",
    "PopulationFit": "fitting.population",
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
    """Import the module that holds a public name on first use, then keep the name.

    No submodule may carry a public name (``fit``, ``compare``, ...): importing it
    would set the package attribute to the module and shadow the function.
    """
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twinbayes' has no attribute {name!r}")
