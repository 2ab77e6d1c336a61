"""From a spec and parameter values to predicted trajectories (the model's observables on top:
:mod:`twinbayes.model.prediction`)."""

from .linear import Doses, state_amounts
from .reference import solve_reference

__all__ = [
    "Doses",
    "state_amounts",
    "solve_reference",
]
