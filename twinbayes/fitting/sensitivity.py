"""Prior and likelihood sensitivity of a fitted twin: is the prior in conflict with the data?

Power-scaling sensitivity (Kallioinen, Paananen, Bürkner & Vehtari 2024, "Detecting and
diagnosing prior and likelihood sensitivity with power-scaling", Stat Comput 34:57): the
posterior is perturbed by raising the prior (or the likelihood) to a power ``alpha`` near 1,

.. math:: p_\\alpha(\\theta \\mid y) \\propto p(\\theta)^\\alpha \\, p(y \\mid \\theta),

estimated from the existing draws by Pareto-smoothed importance sampling (no refits), and the
sensitivity of each parameter is the derivative of the cumulative Jensen-Shannon distance between
the base and perturbed posteriors with respect to ``log2(alpha)``.  ``arviz_stats.psense``
computes it; twinbayes supplies the log prior of every draw (the spec's priors, SciPy densities)
and the pointwise log-likelihood.  Reading (after Kallioinen et al., Section 3): a sensitive
prior with an insensitive likelihood is a **strong prior, weak likelihood**; both sensitive means
prior and data both shape the posterior, which with a handful of clinical samples is common and
harmless when they agree, so twinbayes calls it a **prior-data conflict** only when, in addition,
the posterior median lies in the prior's outer 1 % (prior CDF below 0.005 or above 0.995), and
otherwise an **informative prior**.  None of these stops a fit (the gate is about the sampler);
they are reported beside the gate, so that an adult prior on a neonate's data cannot pass
unremarked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["Sensitivity", "power_scaling_sensitivity", "THRESHOLD"]

THRESHOLD = 0.05
"""Kallioinen et al. (2024): power-scaling sensitivity above 0.05 is worth a look."""


@dataclass(frozen=True)
class Sensitivity:
    """Prior and likelihood power-scaling sensitivity per parameter, and what they mean."""

    prior: dict[str, float]
    likelihood: dict[str, float]
    prior_quantile: dict[str, float]
    """Prior CDF at the posterior median of each parameter."""
    threshold: float = THRESHOLD

    def diagnosis(self, name: str) -> str:
        """``"prior-data conflict"``, ``"strong prior, weak likelihood"``, ``"informative prior"`` or ``""``."""
        p, lik, q = self.prior[name], self.likelihood[name], self.prior_quantile[name]
        if p < self.threshold:
            return ""
        if lik < self.threshold:
            return "strong prior, weak likelihood"
        return "prior-data conflict" if not 0.005 <= q <= 0.995 else "informative prior"

    @property
    def conflicts(self) -> list[str]:
        """Parameters whose prior conflicts with the data."""
        return [n for n in self.prior if self.diagnosis(n) == "prior-data conflict"]

    def as_dict(self) -> dict:
        return {
            n: {
                "prior": self.prior[n],
                "likelihood": self.likelihood[n],
                "prior_quantile": self.prior_quantile[n],
                "diagnosis": self.diagnosis(n),
            }
            for n in self.prior
        }

    def __str__(self) -> str:
        worry = ("prior-data conflict", "strong prior, weak likelihood")
        flagged = [f"{n} ({self.diagnosis(n)})" for n in self.prior if self.diagnosis(n) in worry]
        return "prior sensitivity: " + ("; ".join(flagged) if flagged else "no prior-data conflict")


def power_scaling_sensitivity(twin, threshold: float = THRESHOLD) -> Sensitivity:
    """Power-scaling sensitivity of every estimated parameter of ``twin`` (see the module docstring).

    Parameters
    ----------
    twin : Twin
        A fitted twin (posterior and pointwise log-likelihood).
    threshold : float
        Sensitivity above which a parameter is flagged (0.05, Kallioinen et al. 2024).

    Returns
    -------
    Sensitivity
    """
    import warnings

    import arviz_stats as azs

    names = list(twin.spec.parameters)
    post = twin.idata["posterior"].to_dataset()[names]
    log_prior = sum(
        xr.apply_ufunc(p.prior.logpdf, post[n]) for n, p in twin.spec.parameters.items()
    )
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_prior": xr.Dataset({"lprior": log_prior}),
            "log_likelihood": xr.Dataset({"y": twin.pointwise_log_likelihood()}),
        }
    )
    with warnings.catch_warnings():  # PSIS's own Pareto-k warnings: the values are read as they are
        warnings.simplefilter("ignore")
        values = {g: azs.psense(tree, group=g) for g in ("prior", "likelihood")}
    quantile = {
        n: float(p.prior.scipy().cdf(np.median(post[n].values)))
        for n, p in twin.spec.parameters.items()
    }
    return Sensitivity(
        *({n: float(np.asarray(values[g][n])) for n in names} for g in ("prior", "likelihood")),
        quantile,
        threshold=threshold,
    )
