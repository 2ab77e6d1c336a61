"""LOO-PIT uniformity test (Säilynoja et al. 2022): size, power, and on a fitted twin."""

import numpy as np

from twinbayes.fitting.calibration import loo_pit, pit_uniformity_test


def test_band_has_simultaneous_coverage_and_power():
    rng = np.random.default_rng(1)
    inside = [pit_uniformity_test(rng.uniform(size=20), seed=2).calibrated for _ in range(300)]
    assert 0.91 < np.mean(inside) < 0.99  # nominal 0.95, binomial sd 0.013
    too_narrow = pit_uniformity_test(rng.uniform(0.35, 0.65, size=20))  # overdispersed predictions
    too_low = pit_uniformity_test(rng.uniform(0.0, 0.3, size=20))  # biased predictions
    assert not too_narrow.calibrated and too_narrow.p_value < 0.05
    assert not too_low.calibrated and too_low.p_value < 0.01
    t = pit_uniformity_test(rng.uniform(size=20))
    assert np.all(t.lower <= t.upper) and np.all((t.ecdf >= 0) & (t.ecdf <= 1))


def test_loo_pit_of_a_fitted_twin(theoph4):
    from twinbayes import load_spec
    from twinbayes.fitting.ladder import NO_LADDER
    from twinbayes.fitting.twin import fit

    twin = fit(
        load_spec("pk_1cmt_oral"), theoph4, seed=4, draws=500, tune=500, chains=2, ladder=NO_LADDER
    )
    pit = loo_pit(twin)
    assert pit.shape == (10,) and np.all((pit >= 0) & (pit <= 1))
    assert pit_uniformity_test(pit).calibrated
