"""Prior distributions that a spec may name, for PyMC and for NumPy simulation.

Only the families below can be written in a spec; their arguments follow
PyMC's names, so ``{distribution = "lognormal", mu = 0.0, sigma = 1.0}`` means
``pm.LogNormal(mu=0, sigma=1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..error import SpecError

__all__ = ["Prior", "PRIOR_FAMILIES"]

# family -> (PyMC class name, required args, positive-only support?)
PRIOR_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "normal": ("Normal", ("mu", "sigma")),
    "lognormal": ("LogNormal", ("mu", "sigma")),
    "halfnormal": ("HalfNormal", ("sigma",)),
    "halfcauchy": ("HalfCauchy", ("beta",)),
    "exponential": ("Exponential", ("lam",)),
    "gamma": ("Gamma", ("alpha", "beta")),
    "uniform": ("Uniform", ("lower", "upper")),
    "beta": ("Beta", ("alpha", "beta")),
}
_POSITIVE_ARGS = {"sigma", "beta", "lam", "alpha"}


@dataclass(frozen=True)
class Prior:
    """A prior distribution from the whitelist.

    Attributes
    ----------
    family : str
        One of :data:`PRIOR_FAMILIES`.
    args : dict
        The family's arguments (floats).
    """

    family: str
    args: tuple[tuple[str, float], ...]

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Prior:
        if not isinstance(raw, dict):
            raise SpecError(
                where,
                'a prior must be a table such as {distribution = "lognormal", mu = 0.0, sigma = 1.0}',
            )
        family = raw.get("distribution")
        if family not in PRIOR_FAMILIES:
            raise SpecError(
                f"{where}.distribution",
                f"unknown distribution {family!r}; choose one of {', '.join(PRIOR_FAMILIES)}",
            )
        _, required = PRIOR_FAMILIES[family]
        extra = set(raw) - set(required) - {"distribution"}
        missing = set(required) - set(raw)
        if extra or missing:
            raise SpecError(
                where,
                f"{family} takes exactly the arguments {', '.join(required)}"
                + (f"; unexpected: {', '.join(sorted(extra))}" if extra else "")
                + (f"; missing: {', '.join(sorted(missing))}" if missing else ""),
            )
        args = {}
        for k in required:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise SpecError(f"{where}.{k}", f"must be a finite number, got {v!r}")
            if k in _POSITIVE_ARGS and v <= 0:
                raise SpecError(f"{where}.{k}", f"must be > 0, got {v!r}")
            args[k] = float(v)
        if family == "uniform" and not args["lower"] < args["upper"]:
            raise SpecError(where, "uniform needs lower < upper")
        return cls(family, tuple(args.items()))

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.args)

    def to_pymc(self, name: str):
        """Create the PyMC random variable (inside a model context)."""
        import pymc as pm

        return getattr(pm, PRIOR_FAMILIES[self.family][0])(name, **self.kwargs)

    def to_pymc_dist(self, shape: int | None = None):
        """The unnamed PyMC distribution (``.dist``), e.g. the ``sd_dist`` of an LKJ prior."""
        import pymc as pm

        return getattr(pm, PRIOR_FAMILIES[self.family][0]).dist(**self.kwargs, shape=shape)

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        """Draw from the prior with NumPy (for simulation and prior checks)."""
        a = self.kwargs
        match self.family:
            case "normal":
                return rng.normal(a["mu"], a["sigma"], size)
            case "lognormal":
                return rng.lognormal(a["mu"], a["sigma"], size)
            case "halfnormal":
                return np.abs(rng.normal(0.0, a["sigma"], size))
            case "halfcauchy":
                return np.abs(a["beta"] * rng.standard_cauchy(size))
            case "exponential":
                return rng.exponential(1.0 / a["lam"], size)
            case "gamma":
                return rng.gamma(a["alpha"], 1.0 / a["beta"], size)
            case "uniform":
                return rng.uniform(a["lower"], a["upper"], size)
            case "beta":
                return rng.beta(a["alpha"], a["beta"], size)
        raise AssertionError(self.family)  # pragma: no cover

    def median(self) -> float:
        """The prior median (a typical value, used for spec checks)."""
        return float(self.scipy().median())

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log prior density at ``x`` (SciPy; the same parametrisation as PyMC's)."""
        return self.scipy().logpdf(x)

    def scipy(self):
        """The prior as a frozen SciPy distribution."""
        from scipy import stats

        a = self.kwargs
        return {
            "normal": lambda: stats.norm(a["mu"], a["sigma"]),
            "lognormal": lambda: stats.lognorm(a["sigma"], scale=np.exp(a["mu"])),
            "halfnormal": lambda: stats.halfnorm(scale=a["sigma"]),
            "halfcauchy": lambda: stats.halfcauchy(scale=a["beta"]),
            "exponential": lambda: stats.expon(scale=1.0 / a["lam"]),
            "gamma": lambda: stats.gamma(a["alpha"], scale=1.0 / a["beta"]),
            "uniform": lambda: stats.uniform(a["lower"], a["upper"] - a["lower"]),
            "beta": lambda: stats.beta(a["alpha"], a["beta"]),
        }[self.family]()
