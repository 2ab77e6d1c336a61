"""A results folder's history: what each run of it (a study, then every update) adds.

``history.json`` is a list with one entry per run; ``report`` draws the weights and the
between-twin share over the runs from it and reads the last level's time from its last entry.
"""

from __future__ import annotations

import numpy as np

from ..inputs.patient import Patient

__all__ = ["history_entry"]


def history_entry(patient: Patient, twins: list, comparison, result) -> dict:
    """What one run adds to the history: data extent, elpd and weight per twin, between-twin shares."""
    times = patient.data.obs_time.values
    entry: dict = {
        "n_obs": int(len(times)),
        "last_time": float(np.max(times)),
        "time_unit": patient.time_unit,
        "twins": {t.name: {"converged": bool(t.converged)} for t in twins},
    }
    if comparison is not None:
        tab = comparison.table
        entry["cv"] = str(tab.attrs.get("cv", "loo"))
        for i, name in enumerate(tab.twin.values):
            entry["twins"].setdefault(str(name), {}).update(
                elpd=float(tab.elpd.values[i]),
                se=float(tab.se.values[i]),
                stacking=float(tab.stacking.values[i]),
                pseudo_bma=float(tab.pseudo_bma.values[i]),
            )
    if result is not None and "traj_between_share" in result.data:
        share = result.data["traj_between_share"].mean("time")
        entry["between_share"] = {
            str(s): float(share.sel(scenario=s)) for s in share.scenario.values
        }
    return entry
