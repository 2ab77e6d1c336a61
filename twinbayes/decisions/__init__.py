"""Decisions: scenarios simulated under every twin, their disagreement, forward widening, the ensemble's
predictive and model-informed dosing."""
