"""Out-of-sample comparison of twins of one patient, and their weights.

One module per concern:

* :mod:`~twinbayes.comparison.loo` -- PSIS-LOO with automatic escalation (exact refits, K-fold);
* :mod:`~twinbayes.comparison.cv` -- exact held-out elpd and K-fold by refits;
* :mod:`~twinbayes.comparison.lfo` -- leave-future-out CV of forecasts (exact and PSIS), CRPS;
* :mod:`~twinbayes.comparison.sequential` -- weights and disagreement as a series accrues;
* :mod:`~twinbayes.comparison.weights` -- stacking, pseudo-BMA+, Bayesian-bootstrap stacking, Bayesian stacking;
* :mod:`~twinbayes.comparison.marginal` -- marginal likelihoods (SMC, prior importance sampling) and BMA;
* :mod:`~twinbayes.comparison.notes` -- near-duplicate twins, selection-induced bias;
* :mod:`~twinbayes.comparison.ranking` -- :func:`compare` and its :class:`Comparison`;
* :mod:`~twinbayes.comparison.wrapper` -- refits offered to ``arviz_stats.reloo`` and ``lfo_cv`` (``SamplingWrapper`` subclasses).
"""

from .cv import HeldOutGate, kfold
from .lfo import lfo, weighted_crps
from .loo import k_threshold, loo
from .marginal import MarginalEstimate, log_marginal_likelihood, prior_importance_log_ml
from .notes import selection_bias_note as _selection_bias_note
from .ranking import Comparison, compare
from .sequential import over_time
from .weights import (
    bayesian_stacking_weights,
    bootstrap_stacking_weights,
    pseudo_bma_plus_weights,
    stacking_weights,
)

__all__ = [
    "Comparison",
    "loo",
    "kfold",
    "HeldOutGate",
    "lfo",
    "weighted_crps",
    "over_time",
    "compare",
    "k_threshold",
    "stacking_weights",
    "pseudo_bma_plus_weights",
    "bootstrap_stacking_weights",
    "bayesian_stacking_weights",
    "log_marginal_likelihood",
    "prior_importance_log_ml",
    "MarginalEstimate",
    "_selection_bias_note",
]
