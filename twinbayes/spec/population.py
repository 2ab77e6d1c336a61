"""Between-subject variability in a spec: the ``[population]`` section.

A population model (Sheiner, Rosenberg & Marathe 1977, J Pharmacokinet Biopharm 5:445; the
NONMEM convention) writes each individual parameter as a typical value, a covariate model and a
log-normal deviation, e.g. ``CL = TVCL * weight * exp(eta_CL)``, with the deviations
``eta ~ N(0, Omega)`` across individuals and ``Omega = diag(sd) R diag(sd)``.

``[population]`` declares the deviations (``etas``), their standard deviations (``sd``) and
optionally their correlations (``correlation``, default none).  For the twin of one patient the
deviations are parameters with that prior, written non-centred (Papaspiliopoulos, Roberts &
Skold 2007, Stat Sci 22:59): standard-normal parameters ``<eta>_z`` and the deviations as
derived quantities ``eta = L z`` with ``L L^T = Omega`` (Cholesky).  A hierarchical fit of a
cohort (:func:`twinbayes.fitting.population.fit_population`) estimates ``sd`` instead, with the prior
``sd_prior``, and the spec's ``[parameters]`` become the population's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..error import SpecError
from .fields import check_keys
from .priors import Prior

Z_SUFFIX = "_z"
DEFAULT_SD_PRIOR = {"distribution": "halfnormal", "sigma": 1.0}


@dataclass(frozen=True)
class Population:
    """The ``[population]`` section of a spec.

    Attributes
    ----------
    etas : tuple of str
        Names of the individual deviations (log scale), usable in expressions.
    sd : ndarray
        Their standard deviations ``omega`` (for the twin of one patient).
    correlation : ndarray
        Their correlation matrix ``R`` (identity unless given).
    sd_prior : Prior
        Prior of each standard deviation when a cohort fit estimates them.
    """

    etas: tuple[str, ...]
    sd: np.ndarray
    correlation: np.ndarray
    sd_prior: Prior

    @property
    def z_names(self) -> tuple[str, ...]:
        """The standard-normal parameters behind the deviations (non-centred)."""
        return tuple(e + Z_SUFFIX for e in self.etas)

    @property
    def covariance(self) -> np.ndarray:
        """``Omega = diag(sd) R diag(sd)``."""
        return self.sd[:, None] * self.correlation * self.sd[None, :]

    def cholesky(self) -> np.ndarray:
        """Lower-triangular ``L`` with ``L L^T = Omega``."""
        return np.linalg.cholesky(self.covariance)

    def eta_expressions(self) -> dict[str, str]:
        """Each deviation as an expression of the standard-normal parameters: ``eta_i = sum_j L_ij z_j``."""
        L = self.cholesky()
        out = {}
        for i, eta in enumerate(self.etas):
            terms = [
                f"{float(L[i, j])!r} * {self.z_names[j]}" for j in range(i + 1) if L[i, j] != 0.0
            ]
            out[eta] = " + ".join(terms) if terms else "0.0"
        return out


def parse_population(raw: dict, where: str = "population") -> Population:
    """``[population]``: checked names, positive standard deviations, a valid correlation matrix.

    Raises
    ------
    SpecError
        Naming the field: unknown keys, lengths that disagree, a standard deviation that is not
        positive, or a correlation matrix that is not symmetric with unit diagonal, or whose
        ``Omega`` is not positive definite.
    """

    check_keys(raw, where, {"etas", "sd"}, {"correlation", "sd_prior"})
    etas = raw["etas"]
    if not isinstance(etas, list) or not etas or not all(isinstance(e, str) for e in etas):
        raise SpecError(
            f"{where}.etas", 'must be a non-empty list of names, e.g. ["eta_CL", "eta_V"]'
        )
    if len(set(etas)) != len(etas):
        raise SpecError(f"{where}.etas", "names must be distinct")
    sd = _vector(raw["sd"], len(etas), f"{where}.sd")
    if not (sd > 0).all():
        raise SpecError(f"{where}.sd", f"standard deviations must be > 0, got {sd.tolist()}")
    corr = np.eye(len(etas))
    if "correlation" in raw:
        corr = _correlation(raw["correlation"], len(etas), f"{where}.correlation")
    sd_prior = Prior.from_dict(raw.get("sd_prior", DEFAULT_SD_PRIOR), f"{where}.sd_prior")
    population = Population(tuple(etas), sd, corr, sd_prior)
    try:
        population.cholesky()
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(population.covariance)
        raise SpecError(
            f"{where}.correlation",
            "the variability matrix diag(sd) R diag(sd) is not positive definite (eigenvalues "
            f"{', '.join(f'{v:.3g}' for v in eig)}); correlations must be mutually consistent, "
            "e.g. not 0.9, 0.9 and -0.9 among three deviations",
        ) from None
    return population


def _vector(raw, n: int, where: str) -> np.ndarray:

    if not isinstance(raw, list) or len(raw) != n or not all(_is_number(v) for v in raw):
        raise SpecError(where, f"must be a list of {n} finite numbers (one per eta), got {raw!r}")
    return np.asarray(raw, dtype=float)


def _correlation(raw, n: int, where: str) -> np.ndarray:

    if not isinstance(raw, list) or len(raw) != n:
        raise SpecError(where, f"must be a {n} x {n} list of rows, got {raw!r}")
    R = np.vstack([_vector(row, n, f"{where}[{i}]") for i, row in enumerate(raw)])
    if not np.allclose(R, R.T, rtol=0, atol=1e-12):
        raise SpecError(where, "must be symmetric (R[i][j] == R[j][i])")
    if not np.allclose(np.diag(R), 1.0, rtol=0, atol=1e-12):
        raise SpecError(where, "must have ones on the diagonal")
    if (np.abs(R) > 1).any():
        raise SpecError(where, "correlations must lie in [-1, 1]")
    return R


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and bool(np.isfinite(v))
