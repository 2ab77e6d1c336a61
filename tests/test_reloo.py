"""Our PSIS-LOO escalation vs arviz-stats' reloo driven through TwinSamplingWrapper (same refits, same seeds)."""

import warnings

import arviz_stats as azs
import numpy as np
from test_compare import QUICK

from twinbayes import load_spec
from twinbayes.comparison import loo
from twinbayes.comparison.wrapper import TwinSamplingWrapper
from twinbayes.fitting.twin import fit
from twinbayes.model.simulate import simulate_patient


def test_reloo_through_the_wrapper_equals_our_exact_refits():
    spec = load_spec("pk_1cmt_iv")
    times = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    truth = {"CL": 5.0, "V": 10.0, "sigma_add": 0.2, "sigma_prop": 0.1}
    patient = simulate_patient(spec, truth, times, {"iv": ([0.0], [100.0])}, seed=7)
    twin0 = fit(spec, patient, seed=3, **QUICK)
    values = twin0.design.values["concentration"].copy()
    values[0] *= 2.5  # an influential outlier: its Pareto k is high
    twin = fit(
        spec, patient, design=twin0.design.with_values({"concentration": values}), seed=3, **QUICK
    )
    ours = loo(twin, seed=5, **QUICK)
    assert (ours["method"].values == "refit").any()
    wrapper = TwinSamplingWrapper(twin, seed=5, **QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psis = azs.loo(wrapper.idata_orig, pointwise=True, var_name="y")
        exact = azs.reloo(wrapper, psis, k_threshold=ours.attrs["threshold"], pointwise=True)
    np.testing.assert_allclose(exact.elpd_i.values, ours["elpd_i"].values, rtol=1e-12)
    assert abs(exact.elpd - ours.attrs["elpd"]) < 1e-9
