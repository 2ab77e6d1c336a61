"""Residual error models: one small class per noise model, the formula in its docstring.

An observation ``y`` of an observable with model-predicted mean ``mu`` is
drawn from the spec's residual error model.  Each class below is the single
place where its density, its standard deviation and its random draws are
written, for NumPy (pointwise log-likelihood, posterior predictive draws,
with an explicit leading draws axis) and for PyMC (the log density NUTS
samples).  The shape follows pints' ``_log_likelihoods.py``.

References
----------
Beal SL, Sheiner LB (1992), *NONMEM Users Guides*, Part V: additive,
proportional and combined ("additive plus proportional") residual error.
Bonate PL (2011), *Pharmacokinetic-Pharmacodynamic Modeling and Simulation*,
2nd ed., ch. 7: the log-normal (exponential) error model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

__all__ = ["ErrorModel", "Additive", "Proportional", "Combined", "LogNormal", "ERROR_MODELS"]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class ErrorModel:
    """Base class: a residual error model whose fields name the parameters holding its scales.

    Subclasses give ``kind`` (the name used in spec files) and :meth:`sd`;
    the Normal density, draws and PyMC distribution are shared unless the
    model works on the log scale (:class:`LogNormal`).
    """

    kind: ClassVar[str] = ""

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the parameters the model reads, in field order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def sd(self, env: Mapping[str, Any], mu: Any, xp: Any = np) -> Any:
        """Standard deviation of the residual at mean ``mu`` (``xp``: NumPy or ``pytensor.tensor``)."""
        raise NotImplementedError

    def logpdf(self, y: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Pointwise log density ``log N(y | mu, sd)``."""
        z = (y - mu) / sd
        return -0.5 * z**2 - np.log(sd) - 0.5 * _LOG_2PI

    def draw(self, mu: np.ndarray, sd: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Observations from standard normal variates ``z``: ``mu + sd z``."""
        return mu + sd * z

    def standardise(self, y: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """The standard normal variate of observation ``y`` (the inverse of :meth:`draw`): ``(y - mu) / sd``."""
        return (y - mu) / sd

    def pymc(self, mu: Any, sd: Any) -> tuple[type, dict[str, Any]]:
        """The PyMC distribution of one observation and its arguments.

        ``cls.dist(**kwargs)`` for ``pm.logp``, ``cls(name, **kwargs, observed=y)`` as a likelihood.
        """
        import pymc as pm

        return pm.Normal, {"mu": mu, "sigma": sd}

    def check_data(self, y: np.ndarray) -> str | None:
        """Why observed values ``y`` cannot come from this model (``None`` when they can)."""
        return None


@dataclass(frozen=True)
class Additive(ErrorModel):
    """``y ~ Normal(mu, a)``: constant standard deviation ``a``."""

    additive: str
    kind: ClassVar[str] = "additive"

    def sd(self, env, mu, xp=np):
        return env[self.additive] + 0.0 * mu


@dataclass(frozen=True)
class Proportional(ErrorModel):
    """``y ~ Normal(mu, b |mu|)``: constant coefficient of variation ``b``."""

    proportional: str
    kind: ClassVar[str] = "proportional"

    def sd(self, env, mu, xp=np):
        return env[self.proportional] * xp.abs(mu)


@dataclass(frozen=True)
class Combined(ErrorModel):
    """``y ~ Normal(mu, sqrt(a^2 + (b mu)^2))``: additive plus proportional (NONMEM's combined model)."""

    additive: str
    proportional: str
    kind: ClassVar[str] = "combined"

    def sd(self, env, mu, xp=np):
        return xp.sqrt(env[self.additive] ** 2 + (env[self.proportional] * mu) ** 2)


@dataclass(frozen=True)
class LogNormal(ErrorModel):
    """``log y ~ Normal(log mu, sigma)``: exponential error, ``sigma`` on the log scale.

    Density ``-(log y - log mu)^2 / (2 sigma^2) - log sigma - log y - log(2 pi)/2``;
    it needs ``y > 0``.
    """

    sigma: str
    kind: ClassVar[str] = "lognormal"

    def sd(self, env, mu, xp=np):
        return env[self.sigma] + 0.0 * mu

    def logpdf(self, y, mu, sd):
        z = (np.log(y) - np.log(mu)) / sd
        return -0.5 * z**2 - np.log(sd) - np.log(y) - 0.5 * _LOG_2PI

    def draw(self, mu, sd, z):
        return mu * np.exp(sd * z)

    def standardise(self, y, mu, sd):
        """``(log y - log mu) / sigma``."""
        return (np.log(y) - np.log(mu)) / sd

    def pymc(self, mu, sd):
        import pymc as pm
        import pytensor.tensor as pt

        return pm.LogNormal, {"mu": pt.log(mu), "sigma": sd}

    def check_data(self, y):
        if np.any(np.asarray(y) <= 0):
            return (
                "has values <= 0, which a lognormal error model cannot explain; use the combined error "
                "model or remove values below the quantification limit"
            )
        return None


ERROR_MODELS: dict[str, type[ErrorModel]] = {
    cls.kind: cls for cls in (Additive, Proportional, Combined, LogNormal)
}
"""Spec-file name -> error model class; its dataclass fields are the spec's keys."""
