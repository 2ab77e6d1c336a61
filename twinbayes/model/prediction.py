"""Predicted and simulated observations of a spec: functional shortcuts to :class:`~twinbayes.model.twin_model.TwinModel`.

Kept for scripts and notebooks; each function builds the spec's model and
calls the method of the same meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dynamics.design import Design, design_for
from ..spec.expr import NUMPY
from ..spec.model_spec import ModelSpec
from .twin_model import TwinModel

__all__ = [
    "Design",
    "design_for",
    "predict_observations",
    "observation_moments",
    "simulate_observations",
    "log_likelihood",
]


def _model(spec: ModelSpec) -> TwinModel:
    return TwinModel.of(spec)


def predict_observations(
    spec: ModelSpec, env: Mapping[str, Any], design: Design, backend=NUMPY
) -> dict[str, Any]:
    """Mean of each observable at the design's times (:meth:`TwinModel.means`)."""
    return _model(spec).means(env, design, backend)


def observation_moments(
    spec: ModelSpec, params: Mapping[str, Any], design: Design
) -> dict[str, tuple]:
    """Observable -> (error model, mean, residual SD) (:meth:`TwinModel.moments`)."""
    return _model(spec).moments(params, design)


def simulate_observations(
    spec: ModelSpec,
    params: Mapping[str, float],
    design: Design,
    rng: np.random.Generator,
    moments=None,
) -> dict[str, np.ndarray]:
    """Observations drawn from the spec's full model (:meth:`TwinModel.simulate`)."""
    return _model(spec).simulate(params, design, rng, moments)


def log_likelihood(
    spec: ModelSpec, params: Mapping[str, Any], design: Design, moments=None
) -> dict[str, np.ndarray]:
    """Pointwise log density of the design's observed values (:meth:`TwinModel.log_likelihood`)."""
    return _model(spec).log_likelihood(params, design, moments)
