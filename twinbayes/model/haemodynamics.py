"""Inflow waveforms for Windkessel twins: beat onsets from a pressure trace, half-sine ejection.

Arterial pressure records (e.g. MIMIC) rarely come with aortic flow.  A
Windkessel twin then needs an *assumed* inflow, and the assumption must be
explicit: here ventricular ejection is a half sine (a classical idealisation,
e.g. Stergiopulos et al. 1999, Am J Physiol 276:H81-H88) of a given stroke
volume, starting at each beat onset found in the pressure trace, lasting the
ejection time of Weissler et al. (1968, Circulation 37:149-159),
``LVET = 0.413 - 0.0017 HR`` seconds (HR in beats/min).  The R, C and Zc
estimated from such a twin are conditional on the assumed stroke volume
(pressure is linear in the inflow, so scaling the flow rescales R and Zc by the
inverse factor and C by the factor).
"""

from __future__ import annotations

import numpy as np

__all__ = ["beat_onsets", "weissler_ejection_time", "half_sine_inflow"]


def beat_onsets(t: np.ndarray, pressure: np.ndarray, min_interval: float = 0.3) -> np.ndarray:
    """Times of the diastolic minimum before each systolic upstroke.

    Upstrokes are where ``dP/dt`` first exceeds half its 99th percentile;
    each onset is the pressure minimum within ``min_interval`` seconds before
    it.  Upstrokes closer than ``min_interval`` to the previous are ignored.
    """
    t, p = np.asarray(t, float), np.asarray(pressure, float)
    if t.ndim != 1 or t.shape != p.shape or len(t) < 3 or np.any(np.diff(t) <= 0):
        raise ValueError(
            "beat_onsets: t and pressure must be 1-d arrays of equal length with increasing t"
        )
    dp = np.gradient(p, t)
    threshold = 0.5 * np.percentile(dp, 99)
    up = np.flatnonzero((dp[1:] > threshold) & (dp[:-1] <= threshold)) + 1
    onsets: list[float] = []
    for i in up:
        window = (t >= t[i] - min_interval) & (t <= t[i])
        j = np.flatnonzero(window)[np.argmin(p[window])]
        if not onsets or t[j] - onsets[-1] >= min_interval:
            onsets.append(float(t[j]))
    return np.array(onsets)


def weissler_ejection_time(heart_rate: float) -> float:
    """Left-ventricular ejection time (s) for a heart rate in beats/min (Weissler et al. 1968, men)."""
    return 0.413 - 0.0017 * heart_rate


def half_sine_inflow(
    onsets: np.ndarray,
    ejection_time: float,
    stroke_volume: float,
    t_end: float,
    points_per_beat: int = 12,
):
    """Knots (times, flows) on ``[0, t_end]`` of a half-sine ejection after each onset, zero flow in diastole.

    Each beat ejects ``stroke_volume`` (mL) over ``ejection_time`` (s):
    ``Q(t) = Q_max sin(pi (t - t_k) / T_e)`` with ``Q_max = pi SV / (2 T_e)``.
    Onsets may lie before 0 (a beat already ejecting when the record starts).
    The knots sample each half sine at ``points_per_beat`` + 1 points (linear
    interpolation between them keeps the stroke volume to within 1 %), plus
    0 and ``t_end``.
    """
    onsets = np.asarray(onsets, float)
    if ejection_time <= 0 or stroke_volume <= 0:
        raise ValueError("half_sine_inflow: ejection_time and stroke_volume must be positive")
    if np.any(np.diff(onsets) < ejection_time):
        raise ValueError("half_sine_inflow: beats overlap (onsets closer than the ejection time)")
    grid = np.linspace(0.0, ejection_time, points_per_beat + 1)
    knots = np.unique(np.concatenate([[0.0, t_end], *(tk + grid for tk in onsets)]))
    knots = knots[(knots >= 0) & (knots <= t_end)]
    q_max = np.pi * stroke_volume / (2 * ejection_time)
    flow = np.zeros_like(knots)
    for tk in onsets:
        inside = (knots >= tk) & (knots <= tk + ejection_time)
        flow[inside] = q_max * np.sin(np.pi * (knots[inside] - tk) / ejection_time)
    return knots, np.maximum(flow, 0.0)
