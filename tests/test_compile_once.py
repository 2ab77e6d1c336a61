"""One compilation per twin: the fit, the gate's ladder, exact LOO refits and K-fold share it."""

import nutpie

from twinbayes import Patient, fit, load_spec
from twinbayes.comparison import kfold, loo
from twinbayes.ladder import NO_LADDER
from twinbayes.library import data_path

SHORT = dict(draws=200, tune=200, chains=2, ladder=NO_LADDER)


def test_fit_refits_and_kfold_compile_once(monkeypatch):
    calls = []
    real = nutpie.compile_pymc_model

    def counting(model, *args, **kwargs):
        calls.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(nutpie, "compile_pymc_model", counting)
    patient = Patient.from_csv(data_path("indometacin.csv"), subject=1)
    twin = fit(load_spec("pk_2cmt_iv"), patient, seed=3, **SHORT)
    assert len(calls) == 1
    folds = kfold(twin, k=4, seed=1)
    assert folds.attrs["k"] == 4 and len(calls) == 1
    refitted = loo(twin, threshold=-1.0, max_refits=100, seed=2)  # every observation refitted
    assert (refitted["method"].values == "refit").all() and len(calls) == 1
