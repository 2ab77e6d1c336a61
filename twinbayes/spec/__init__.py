"""Spec files: format, validation and the safe expression compiler."""

from .expr import Expression, ExpressionError, compile_expression
from .model_spec import ErrorModel, ModelSpec, Observation, Parameter, Route, SpecError, load_spec
from .priors import Prior

__all__ = [
    "Expression",
    "ExpressionError",
    "compile_expression",
    "ErrorModel",
    "ModelSpec",
    "Observation",
    "Parameter",
    "Route",
    "SpecError",
    "load_spec",
    "Prior",
]
