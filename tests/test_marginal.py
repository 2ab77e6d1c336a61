"""Marginal likelihood by prior importance sampling, against Gauss-Hermite quadrature.

Reference: for a twin with a population prior on two standard-normal deviations (the published
NONMEM phenobarbital model, everything else fixed), ``p(y) = E_z[p(y | z)]`` is a 2-d integral
that 60 x 60 Gauss-Hermite nodes evaluate to far below the Monte Carlo error.
"""

import numpy as np
import pytest

import twinbayes as tb
from twinbayes.comparison import prior_importance_log_ml
from twinbayes.dynamics.design import design_for
from twinbayes.model import TwinModel


def quadrature_log_ml(spec, design, nodes: int = 60) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2/2): the standard normal
    z1, z2 = (a.ravel() for a in np.meshgrid(x, x, indexing="ij"))
    weights = np.outer(w, w).ravel() / w.sum() ** 2
    ll = TwinModel.of(spec).log_likelihood({"eta_CL_z": z1, "eta_V_z": z2}, design)
    total = sum(v.sum(axis=1) for v in ll.values())
    return float(np.log(np.sum(weights * np.exp(total - total.max()))) + total.max())


@pytest.mark.parametrize("subject", ["1", "11", "28"])
def test_prior_importance_sampling_matches_quadrature(subject):
    spec = tb.load_spec("phenobarbital_neonate_nonmem")
    design = design_for(spec, tb.Patient.from_csv("bundled:phenobarbital.csv", subject=subject))
    est = prior_importance_log_ml(spec, design, draws=20_000, seed=1)
    ref = quadrature_log_ml(spec, design)
    assert est.se < 0.05 and est.ess > 1000, est
    assert abs(est.log_ml - ref) < 4 * est.se + 1e-3, (est, ref)
    # seeded: the same number again; another seed moves it by about its standard error only
    assert prior_importance_log_ml(spec, design, draws=20_000, seed=1) == est
    assert abs(prior_importance_log_ml(spec, design, seed=2).log_ml - est.log_ml) < 6 * est.se


def test_weak_priors_and_rich_data_show_as_a_small_effective_sample_size():
    """Broad priors and 10 levels: the estimator says it is not to be trusted (use SMC)."""
    spec = tb.load_spec("pk_1cmt_oral")
    design = design_for(spec, tb.Patient.from_csv("bundled:theophylline.csv", subject="1"))
    est = prior_importance_log_ml(spec, design, draws=20_000, seed=1)
    assert est.ess < 100 and np.isfinite(est.log_ml)
