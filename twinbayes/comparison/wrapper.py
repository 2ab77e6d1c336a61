"""Refits for arviz-stats: a :class:`arviz_stats.SamplingWrapper` around a twin.

arviz-stats 1.x computes exact leave-one-out refits (``reloo``) through a
wrapper protocol: select the observations to leave out, sample without them,
and give the log-likelihood of the held-out ones.  :class:`TwinSamplingWrapper`
implements it with :class:`~twinbayes.fitting.twin.Refitter` (one compiled model, 0/1
observation weights), so ``arviz_stats.reloo(TwinSamplingWrapper(twin))`` and
:func:`twinbayes.comparison.loo` refit the same way; with the same seeds they give
the same numbers (tested), which checks our escalation against arviz-stats'.

References
----------
Vehtari A, Gelman A, Gabry J (2017). Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC. Stat Comput 27:1413-1432, sec. 2.1 and 4.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from arviz_stats.loo.wrapper import SamplingWrapper

from ..fitting.twin import Refitter, Twin
from ..model.twin_model import TwinModel
from .cv import REFIT_SETTINGS
from .lfo import point_sums, time_points
from .loo import pointwise_loglik

__all__ = ["TwinSamplingWrapper", "TwinLFOWrapper"]


class TwinSamplingWrapper(SamplingWrapper):
    """A twin's exact refits for ``arviz_stats.reloo``.

    Parameters
    ----------
    twin : Twin
    seed : int
        The refit leaving out observation ``j`` uses seed ``seed + 1 + j``, as :func:`~twinbayes.comparison.loo`.
    **refit_kwargs
        Sampler settings for the refits (default: those of :func:`~twinbayes.comparison.loo`'s
        refits, :data:`~twinbayes.comparison.cv.REFIT_SETTINGS`).  ``reloo`` has no place for
        a refit's gate: the wrapper's refits are not escalated, ``loo``'s are where they fall short.

    Examples
    --------
    >>> import arviz_stats as azs
    >>> wrapper = TwinSamplingWrapper(twin)  # doctest: +SKIP
    >>> exact = azs.reloo(wrapper, azs.loo(wrapper.idata_orig, pointwise=True, var_name="y"))  # doctest: +SKIP
    """

    def __init__(self, twin: Twin, seed: int = 0, **refit_kwargs):
        tree = xr.DataTree.from_dict(
            {
                "posterior": twin.idata["posterior"].to_dataset(),
                "log_likelihood": xr.Dataset({"y": pointwise_loglik(twin)}),
            }
        )
        settings = {**REFIT_SETTINGS, **refit_kwargs}
        settings.pop("ladder", None)
        super().__init__(Refitter(twin, **settings), idata_orig=tree)
        self.twin = twin
        self.seed = seed

    def sel_observations(self, idx):
        """``(j, holdout mask)`` for the refit, and the mask of the held-out observation."""
        holdout = np.zeros(self.twin.design.n_obs, bool)
        holdout[idx] = True
        return (int(idx), holdout), holdout

    def sample(self, modified_observed_data):
        j, holdout = modified_observed_data
        params, _ = self.model.posterior(holdout, self.seed + 1 + j)
        return params

    def get_inference_data(self, fitted_model):
        return fitted_model

    def log_likelihood__i(self, excluded_obs, idata__i) -> xr.DataArray:
        """Log-likelihood of the held-out observation under each refit draw, dims ``(chain, draw)``."""
        held_out = self.twin.design.split(excluded_obs)[1]
        ll = TwinModel.of(self.twin.spec).log_likelihood(idata__i, held_out)
        values = np.concatenate([v for v in ll.values()], axis=1)[:, 0]
        return xr.DataArray(values[None, :], dims=("chain", "draw"))


class TwinLFOWrapper(SamplingWrapper):
    """A twin's forecast refits for ``arviz_stats.lfo_cv`` (leave-future-out CV).

    ``lfo_cv`` needs one log-likelihood value per time point: observables measured at
    one time are summed into their joint density (dimension ``time``, the distinct
    observation times).  A refit excluding time points ``cutoff, ...`` uses seed
    ``seed + cutoff``, as :func:`~twinbayes.comparison.lfo`, so the two give the same
    numbers (tested): a check of our PSIS-LFO loop against arviz-stats'.

    Parameters
    ----------
    twin : Twin
    seed : int
    **refit_kwargs
        Sampler settings for the refits (default: the twin's own).

    Examples
    --------
    >>> import arviz_stats as azs
    >>> wrapper = TwinLFOWrapper(twin)  # doctest: +SKIP
    >>> azs.lfo_cv(wrapper.idata_orig, wrapper, min_observations=3, forecast_horizon=1)  # doctest: +SKIP
    """

    def __init__(self, twin: Twin, seed: int = 0, **refit_kwargs):
        self.points, self.point_of_obs = time_points(twin.design)
        joint = point_sums(pointwise_loglik(twin).values, self.point_of_obs, len(self.points))
        tree = xr.DataTree.from_dict(
            {
                "posterior": twin.idata["posterior"].to_dataset(),
                "log_likelihood": xr.Dataset(
                    {"y": (("chain", "draw", "time"), joint)}, coords={"time": self.points}
                ),
            }
        )
        super().__init__(Refitter(twin, **refit_kwargs), idata_orig=tree)
        self.twin = twin
        self.seed = seed

    def sel_observations(self, idx):
        """Train on the time points before ``idx[0]``; the excluded points are ``idx``."""
        cutoff = int(np.min(idx))
        return (cutoff, self.point_of_obs >= cutoff), np.asarray(idx)

    def sample(self, modified_observed_data):
        cutoff, future = modified_observed_data
        params, _ = self.model.posterior(future, self.seed + cutoff)
        return params

    def get_inference_data(self, fitted_model):
        """The refit's draws as a one-chain posterior (the draws of all chains pooled)."""
        return xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset(
                    {k: (("chain", "draw"), v[None, :]) for k, v in fitted_model.items()}
                )
            }
        )

    def log_likelihood__i(self, excluded_obs, idata__i) -> xr.DataArray:
        """Joint log density of each excluded time point under each refit draw, ``(chain, draw, time)``."""
        cutoff = int(np.min(excluded_obs))
        future = self.point_of_obs >= cutoff
        params = {k: v.values[0] for k, v in idata__i["posterior"].data_vars.items()}
        held_out = self.twin.design.split(future)[1]
        ll = np.concatenate(
            list(TwinModel.of(self.twin.spec).log_likelihood(params, held_out).values()), axis=1
        )
        joint = point_sums(ll, self.point_of_obs[future] - cutoff, len(excluded_obs))
        return xr.DataArray(joint[None], dims=("chain", "draw", "time"))
