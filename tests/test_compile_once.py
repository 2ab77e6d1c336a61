"""One compilation per twin: the fit, the gate's ladder, exact LOO refits, K-fold and LFO share it;
and the compiled callbacks come from the on-disk cache in a second process, sampling the same
draws as nutpie's own compilation."""

import json
import os
import subprocess
import sys

import numpy as np

from twinbayes import Patient, fit, load_spec
from twinbayes.comparison import kfold, lfo, loo
from twinbayes.fitting import twin as fitting
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.inputs.library import data_path

SHORT = dict(draws=200, tune=200, chains=2, ladder=NO_LADDER)


def test_fit_refits_kfold_and_lfo_compile_once(monkeypatch):
    calls = []
    real = fitting.compile_model

    def counting(model, *args, **kwargs):
        calls.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(fitting, "compile_model", counting)
    patient = Patient.from_csv(data_path("indometacin.csv"), subject=1)
    twin = fit(load_spec("pk_2cmt_iv"), patient, seed=3, **SHORT)
    assert len(calls) == 1
    folds = kfold(twin, k=10, seed=1)  # issue #14: a 10-fold K-fold compiles nothing more
    assert folds.attrs["k"] == 10 and len(np.unique(folds["fold"])) == 10 and len(calls) == 1
    refitted = loo(twin, threshold=-1.0, max_refits=100, seed=2)  # every observation refitted
    assert (refitted["method"].values == "refit").all() and len(calls) == 1
    forecasts = lfo(twin, min_points=4, method="exact", seed=4)  # a refit at every origin
    assert forecasts["refit"].all() and forecasts.sizes["origin"] >= 4 and len(calls) == 1


CHILD = r"""
import json, sys
import numpy as np
import nutpie
import numpy as np
from twinbayes import Patient, load_spec
from twinbayes.fitting.compile.compiled_model import compile_model
from twinbayes.dynamics.design import design_for
from twinbayes.model.twin_model import TwinModel, ieee_numerics
spec = load_spec("pk_1cmt_oral")
design = design_for(spec, Patient.from_csv("bundled:theophylline.csv", subject="1"))
model = TwinModel.of(spec).pymc_model(design, weighted=True)
weights = np.ones(design.n_obs)
weights[2] = 0.0
ours = compile_model(model)
draws = {}
with ieee_numerics():  # nutpie's own compilation under the numerics twinbayes compiles with
    theirs = nutpie.compile_pymc_model(model, default_initialization_strategy="prior", jitter_rvs=set())
for label, compiled in (("ours", ours), ("nutpie", theirs)):
    idata = nutpie.sample(compiled.with_data(obs_weight=weights), draws=100, tune=100, chains=2,
                          seed=5, progress_bar=False)
    draws[label] = {v: idata.posterior[v].values.ravel().tolist() for v in idata.posterior.data_vars}
hits = [ours.compiled_logp_func.cache_hits, ours.compiled_expand_func.cache_hits]
print(json.dumps({"hits": hits, "same": draws["ours"] == draws["nutpie"]}))
"""


def test_compiled_callbacks_are_cached_across_processes(tmp_path):
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'cache'}"}
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["hits"] == [0, 0]  # compiled in the first process ...
    assert warm["hits"] == [1, 1]  # ... loaded from disk in the second
    assert cold["same"] and warm["same"]  # the same draws as nutpie's own compilation, with weights


def _infant(weight: float, levels: tuple[float, float]) -> Patient:
    """A simulated infant on a fixed protocol (loading and maintenance dose, two levels)."""
    return Patient.from_records(
        observations=[
            (2.0, "concentration", levels[0], "mg/L"),
            (30.0, "concentration", levels[1], "mg/L"),
        ],
        doses=[(0.0, "iv", 20.0, "mg"), (12.0, "iv", 3.0, "mg"), (24.0, "iv", 3.0, "mg")],
        covariates={"weight": (weight, "kg"), "asphyxia": (0.0, "1")},
        subject=f"w{weight}",
    )


def test_patients_on_one_protocol_share_a_compiled_model(monkeypatch):
    """The weighted model holds the patient's levels and covariates as data: a second patient with
    the same times and doses reuses the compiled model, and gets the draws a fresh compilation gives."""
    calls = []
    real = fitting.compile_model
    monkeypatch.setattr(fitting, "compile_model", lambda m: calls.append(m) or real(m))
    spec = load_spec("phenobarbital_neonate_nonmem")
    a, b = _infant(1.1, (15.0, 18.0)), _infant(2.4, (8.0, 10.5))
    fitting._COMPILED.clear()
    fit(spec, a, seed=4, **SHORT)
    shared = fit(spec, b, seed=4, **SHORT)
    assert len(calls) == 1
    fitting._COMPILED.clear()
    fresh = fit(spec, b, seed=4, **SHORT)
    assert len(calls) == 2
    for name in ("CL", "V", "eta_CL_z"):
        assert np.array_equal(
            shared.idata["posterior"][name].values, fresh.idata["posterior"][name].values
        )
    # the heavier infant's own data and weight reached the shared model
    assert float(shared.idata["posterior"]["V"].median()) > 2.0
