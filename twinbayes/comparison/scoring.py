"""How :func:`~twinbayes.comparison.compare` scores each twin out of sample, as a value.

A twin's score (its pointwise elpd by PSIS-LOO with exact refits, or by leave-future-out CV)
depends on that twin alone.  :class:`Scoring` holds the settings, so that a caller can score
each twin as soon as it is fitted (a study scores twin 1 in a background thread while twin 2
fits) and hand the scores to ``compare(..., scores=...)``; ``compare`` checks that they were
made with its own settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import xarray as xr

from ..fitting.twin import Twin
from .lfo import lfo
from .loo import loo

__all__ = ["Scoring"]


@dataclass(frozen=True)
class Scoring:
    """The out-of-sample score of one twin, with the settings of :func:`~twinbayes.comparison.compare`.

    Attributes
    ----------
    cv : {"loo", "lfo"}
    threshold, max_refits, kfold_k, refit
        See :func:`~twinbayes.comparison.loo`.
    lfo_min_points, lfo_horizon, lfo_method
        See :func:`~twinbayes.comparison.lfo` (``min_points``, ``horizon``, ``method``).
    include_unconverged : bool
        Refit a twin that failed its convergence gate too (otherwise high Pareto k is only flagged).
    seed : int
    refit_kwargs : mapping
        Sampler settings of exact refits.
    """

    cv: str = "loo"
    threshold: float | None = None
    max_refits: int = 10
    kfold_k: int = 10
    refit: bool = True
    lfo_min_points: int = 3
    lfo_horizon: int = 1
    lfo_method: str = "approx"
    include_unconverged: bool = False
    seed: int = 0
    refit_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Scoring:
        """The scoring part of ``compare``'s keyword arguments (the others are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def key(self) -> str:
        """The settings as text: what a score records and ``compare`` checks."""
        return json.dumps(asdict(self), sort_keys=True, default=repr)

    def __call__(self, twin: Twin) -> xr.Dataset:
        """The twin's pointwise scores in the shape ``compare`` tabulates (attribute ``scoring``: :meth:`key`)."""
        if self.cv == "lfo":
            kwargs = dict(min_points=self.lfo_min_points, horizon=self.lfo_horizon)
            ds = _lfo_as_rows(
                lfo(twin, seed=self.seed, method=self.lfo_method, **kwargs, **self.refit_kwargs)
            )
        elif self.cv == "loo":
            ds = loo(
                twin,
                threshold=self.threshold,
                max_refits=self.max_refits,
                kfold_k=self.kfold_k,
                refit=self.refit and (twin.converged or self.include_unconverged),
                seed=self.seed,
                **self.refit_kwargs,
            )
        else:
            raise ValueError(f"cv must be 'loo' or 'lfo', got {self.cv!r}")
        ds.attrs.update(twin=twin.name, scoring=self.key())
        return ds

    def check(self, scores: list[xr.Dataset], twins: list[Twin]) -> None:
        """Raise ``ValueError`` unless ``scores`` are this scoring's, one per twin in order."""
        if len(scores) != len(twins):
            raise ValueError(f"{len(scores)} scores for {len(twins)} twins")
        for ds, twin in zip(scores, twins):
            if ds.attrs.get("twin") != twin.name or ds.attrs.get("scoring") != self.key():
                raise ValueError(
                    f"the score given for twin {twin.name!r} was made for twin "
                    f"{ds.attrs.get('twin')!r} with other settings ({ds.attrs.get('scoring')}); "
                    f"compare's are {self.key()}"
                )


def _lfo_as_rows(ds: xr.Dataset) -> xr.Dataset:
    """An LFO result in the shape :func:`compare` tabulates (one row per forecast origin)."""
    method = ds.attrs["method"]
    fits = ds.attrs["n_refits"] + 1
    out = xr.Dataset(
        {
            "elpd_i": ("obs", ds["elpd_i"].values),
            "pareto_k": ("obs", ds["pareto_k"].values),
            "method": ("obs", np.where(ds["refit"].values, "refit", "psis")),
        },
        coords={"obs": ds["origin"].values, "time": ("obs", ds["forecast_time"].values)},
    )
    out.attrs.update(
        se=ds.attrs["se"],
        p_loo=ds.attrs["p_lfo"],
        n_high_k=ds.attrs["n_refits"] if method == "approx" else 0,
        cv_method=f"{'psis' if method == 'approx' else 'exact'}-lfo {ds.attrs['horizon']}-step, {fits} fit{'s' * (fits > 1)}",
        elpd_waic=np.nan,
        refits=fits,
        refits_unconverged=ds.attrs["refits_unconverged"],
        threshold=ds.attrs["k_threshold"],
        crps=ds.attrs["crps"],
    )
    return out
