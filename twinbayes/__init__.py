"""twinbayes: Bayesian comparison of patient digital twins."""

from .patient import Patient, PatientDataError
from .spec import ModelSpec, SpecError, load_spec
from .units import UnitError

__version__ = "0.1.0"

__all__ = ["Patient", "PatientDataError", "ModelSpec", "SpecError", "load_spec", "UnitError", "__version__"]
