"""Out-of-sample comparison of twins of one patient, and their weights.

One module per concern:

* :mod:`~twinbayes.compare.loo` -- PSIS-LOO with automatic escalation (exact refits, K-fold);
* :mod:`~twinbayes.compare.cv` -- exact held-out elpd and K-fold by refits;
* :mod:`~twinbayes.compare.weights` -- stacking, pseudo-BMA+, Bayesian-bootstrap stacking;
* :mod:`~twinbayes.compare.marginal` -- SMC marginal likelihoods and BMA;
* :mod:`~twinbayes.compare.notes` -- near-duplicate twins, selection-induced bias;
* :mod:`~twinbayes.compare.comparison` -- :func:`compare` and its :class:`Comparison`;
* :mod:`~twinbayes.compare.wrapper` -- refits offered to ``arviz_stats.reloo`` (a ``SamplingWrapper``).
"""

from .comparison import Comparison, compare
from .cv import kfold
from .loo import k_threshold, loo
from .marginal import log_marginal_likelihood
from .notes import selection_bias_note as _selection_bias_note
from .weights import bootstrap_stacking_weights, pseudo_bma_plus_weights, stacking_weights

__all__ = [
    "Comparison",
    "loo",
    "kfold",
    "compare",
    "k_threshold",
    "stacking_weights",
    "pseudo_bma_plus_weights",
    "bootstrap_stacking_weights",
    "log_marginal_likelihood",
    "_selection_bias_note",
]
