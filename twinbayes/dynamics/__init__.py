"""From a spec and parameter values to predicted trajectories."""

from .linear import Doses, state_amounts
from .predict import predict_observations, simulate_observations
from .reference import solve_reference

__all__ = [
    "Doses",
    "state_amounts",
    "predict_observations",
    "simulate_observations",
    "solve_reference",
]
