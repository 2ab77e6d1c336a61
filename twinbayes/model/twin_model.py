"""One model object per spec: the single place a spec becomes a likelihood and a simulator.

:class:`TwinModel` holds a spec's dynamics as a strategy
(:mod:`twinbayes.dynamics.kinds`) and one residual error model per observable
(:mod:`twinbayes.spec.errors`).  Fitting (the PyMC model NUTS samples),
cross-validation refits, pointwise log-likelihoods, posterior predictive
draws, ensembles and scenario simulation all go through it, so the
likelihood is written once:

.. math::

    \\log p(y \\mid \\theta) = \\sum_{o} \\sum_i w_{oi} \\log p_o\\big(y_{oi} \\mid \\mu_o(t_{oi}; \\theta), \\sigma_o(\\mu, \\theta)\\big),

with ``mu_o`` the observable's expression of the states at the observation
times, ``p_o`` its error model, and observation weights ``w`` equal to 1
(plain fits) or 0/1 (cross-validation refits that leave observations out
without changing the compiled graph).

NumPy methods take parameter *draws* (1-d arrays of length S, or scalars)
and return arrays with the draws axis first, ``(S, n_times)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dynamics.design import Design
from ..dynamics.kinds import Dynamics, dynamics_for
from ..inputs.patient import PatientDataError
from ..spec.errors import ErrorModel
from ..spec.expr import NUMPY, PYTENSOR
from ..spec.model_spec import ModelSpec

__all__ = ["TwinModel", "Moments", "obs_dim", "ieee_numerics"]

Moments = dict[str, tuple[ErrorModel, np.ndarray, np.ndarray]]
"""Observable -> (error model, mean, residual SD), each ``(S, n_times)``."""


@contextmanager
def ieee_numerics() -> Iterator[None]:
    """Compile log densities with IEEE floating point inside this block: no fast-math.

    PyTensor's Numba backend compiles with LLVM fast-math flags by default
    (reassociation, contraction into fused multiply-adds).  Then the code
    compiled afresh (kernels inlined into one function) and the code loaded
    from the compile cache (kernels linked separately) round differently, and
    the same seed gave different posteriors on a fresh machine and on every
    later run.  Without fast-math the compiler must keep the order of
    operations, so the cache cannot change a number.  PyTensor keys its cache
    on this flag, so no fast-math kernel is ever loaded.  Cost: see
    ``docs/benchmarks.md`` (ESS/s before and after).

    The flag is changed only inside the block (``pytensor.config.change_flags``), around
    every compilation twinbayes makes (nutpie's and the initial point's in
    :func:`~twinbayes.fitting.compile.compiled_model.compile_model`, PyMC's NUTS, SMC): the
    process's own setting is left as it was.
    """
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        yield


def obs_dim(name: str) -> str:
    """Name of the observation dimension of observable ``name``."""
    return f"{name}_obs"


def covariate_data_name(name: str) -> str:
    """The name of a covariate's ``pm.Data`` in the weighted model (not a spec name: it has a colon)."""
    return f"covariate:{name}"


def design_values(design: Design) -> np.ndarray:
    """The observed values of all observables, concatenated in the design's order."""
    return np.concatenate([np.asarray(design.values[n], float) for n in design.times])


def patient_data(design: Design) -> dict[str, np.ndarray]:
    """The ``pm.Data`` of the weighted model that hold one patient's values (see :meth:`TwinModel.pymc_model`)."""
    return {
        "obs_value": design_values(design),
        **{covariate_data_name(c): np.asarray(v, float) for c, v in design.covariates.items()},
    }


@dataclass(frozen=True)
class TwinModel:
    """A spec's dynamics and error models, with the means, likelihood and simulator built on them.

    Build with :meth:`of`.  Immutable; compiled ODE systems are cached by the
    content of the spec's expressions (:mod:`twinbayes.dynamics.ode`), so an
    edited spec gets its own.
    """

    spec: ModelSpec
    dynamics: Dynamics
    errors: Mapping[str, ErrorModel]

    @classmethod
    def of(cls, spec: ModelSpec) -> TwinModel:
        """The model of ``spec``."""
        return cls(spec, dynamics_for(spec), {n: o.error for n, o in spec.observations.items()})

    # ------------------------------------------------------------------ means

    def constants(self, design: Design) -> dict[str, float]:
        """Everything but the parameters that expressions may use: fixed values, the patient's
        covariates and the forcing inputs' baselines (all in the spec's units)."""
        return {**self.spec.fixed_values(), **design.covariates, **design.baselines}

    def means(self, env: Mapping[str, Any], design: Design, backend=NUMPY) -> dict[str, Any]:
        """Mean of each observable at the design's times.

        ``env`` holds parameter values (derived quantities are added here).
        With NumPy, values may be 1-d arrays of S draws; each mean then has
        shape ``(S, n_times)``.  With PyTensor, one graph per observable.
        """
        spec = self.spec
        # constants first: values already in env (a covariate held as data) take precedence
        env = spec.evaluate_derived({**self.constants(design), **env}, backend)
        batch = (
            {np.shape(v)[0] for v in env.values() if np.ndim(v) > 0} if backend is NUMPY else set()
        )
        if len(batch) > 1:
            raise ValueError(f"parameter draws of different lengths: {sorted(batch)}")
        out = {}
        for name, t in design.times.items():
            obs = spec.observations[name]
            needed = [s for s in spec.states if s in obs.expression.symbols]
            amounts = self.dynamics.states_at(env, t, design.doses, needed, backend, design.inputs)
            forcing = {
                i: design.input_at(i, t)[:, None] if batch else design.input_at(i, t)
                for i in spec.inputs
                if i in obs.expression.symbols
            }
            mu = obs.expression({**env, **amounts, **forcing}, backend)
            if backend is NUMPY:
                mu = np.broadcast_to(np.asarray(mu, float), t.shape + tuple(batch))
                mu = mu.T.copy() if batch else mu.copy()
            out[name] = mu
        return out

    def moments(self, params: Mapping[str, Any], design: Design) -> Moments:
        """Observable -> (error model, mean, residual SD), for NumPy parameter values or draws."""
        columns = {k: (np.asarray(v)[:, None] if np.ndim(v) > 0 else v) for k, v in params.items()}
        columns = {**self.spec.fixed_values(), **columns}  # a residual SD may be fixed
        return {
            name: (self.errors[name], m, self.errors[name].sd(columns, m))
            for name, m in self.means(params, design).items()
        }

    # ------------------------------------------------------------------ NumPy likelihood and simulation

    def log_likelihood(
        self, params: Mapping[str, Any], design: Design, moments: Moments | None = None
    ) -> dict[str, np.ndarray]:
        """Pointwise log density of the design's observed values, ``(S, n_times)`` per observable.

        The same density as :meth:`pymc_model` (tested to ~1e-12).
        """
        moments = moments or self.moments(params, design)
        return {
            name: err.logpdf(design.values[name], m, sd) for name, (err, m, sd) in moments.items()
        }

    def simulate(
        self,
        params: Mapping[str, Any],
        design: Design,
        rng: np.random.Generator,
        moments: Moments | None = None,
    ) -> dict[str, np.ndarray]:
        """Observations drawn from the full model (means plus residual error), one data set per draw."""
        moments = moments or self.moments(params, design)
        return {
            name: err.draw(m, sd, rng.standard_normal(m.shape))
            for name, (err, m, sd) in moments.items()
        }

    # ------------------------------------------------------------------ PyMC

    def check_data(self, design: Design) -> None:
        """Raise :class:`PatientDataError` when observed values are impossible under an error model."""
        for name, y in design.values.items():
            why = self.errors[name].check_data(y)
            if why:
                raise PatientDataError(f"observable {name!r} {why} (spec {self.spec.name})")

    def pymc_model(self, design: Design, weighted: bool = False):
        """The PyMC model of the spec for the data in ``design``.

        Parameters get the spec's priors, derived quantities become
        ``Deterministic`` variables, and each observable gets its error
        model's likelihood: as observed variables (``weighted=False``), or as
        one ``Potential`` ``sum_i w_i log p(y_i | theta)`` with
        ``pm.Data("obs_weight")`` (``weighted=True``; weight 0 leaves an
        observation out exactly, so cross-validation refits change data, not
        the graph, and the model compiles once).  The weighted model also holds
        the observed values (``obs_value``) and the covariates as data, so the
        compiled model of one patient serves every patient with the same design
        (times, doses, inputs): see :func:`patient_data`.
        """
        import pymc as pm
        import pytensor.tensor as pt

        self.check_data(design)
        coords = (
            {} if weighted else {obs_dim(n): np.arange(len(t)) for n, t in design.times.items()}
        )
        with pm.Model(coords=coords) as model:
            env: dict[str, Any] = {
                name: p.prior.to_pymc(name) for name, p in self.spec.parameters.items()
            }
            env.update(self.constants(design))
            if weighted:  # the patient's values as data: other patients of one design reuse the compiled model
                weight = pm.Data("obs_weight", np.ones(design.n_obs))
                observed = pm.Data("obs_value", design_values(design))
                env.update(
                    {
                        c: pm.Data(covariate_data_name(c), np.asarray(v, float))
                        for c, v in design.covariates.items()
                    }
                )
            for d in self.spec.derived.values():
                value = d.expression(env, PYTENSOR)  # a float where it uses fixed values only
                env[d.name] = pm.Deterministic(
                    d.name, pt.as_tensor_variable(value, dtype="float64")
                )
            terms, start = [], 0
            for name, mu in self.means(env, design, PYTENSOR).items():
                err, y = self.errors[name], design.values[name]
                dist, kwargs = err.pymc(mu, err.sd(env, mu, pt))
                if weighted:
                    y_data = observed[start : start + len(y)]
                    terms.append(
                        (
                            weight[start : start + len(y)] * pm.logp(dist.dist(**kwargs), y_data)
                        ).sum()
                    )
                else:
                    dist(name, **kwargs, observed=y, dims=obs_dim(name))
                start += len(y)
            if weighted:
                pm.Potential("weighted_loglik", pt.add(*terms) if len(terms) > 1 else terms[0])
        return model
