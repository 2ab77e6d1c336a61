"""Model records (issue #14): a second process builds nutpie's model from the record and the cached
machine code, skipping the gradient and the linking, and samples bit-identical draws; a record
whose machine code is gone, or that is damaged, falls back to compiling; a model that differs in
anything compiled has another record."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pymc as pm
import pytest

from twinbayes.fitting.compile import model_records
from twinbayes.fitting.compile.compiled_model import _EXPAND_SRC, _LOGP_SRC
from twinbayes.fitting.compile.model_records import ModelRecord

TEMPLATES = _LOGP_SRC + _EXPAND_SRC

CHILD = r"""
import json, sys
import nutpie
from twinbayes import Patient, load_spec
from twinbayes.fitting.compile import graph_cache
from twinbayes.fitting.compile import model_records
from twinbayes.fitting.compile.compiled_model import compile_model
from twinbayes.dynamics.design import design_for
from twinbayes.model.twin_model import TwinModel, ieee_numerics
if sys.argv[1] == "tiny":  # compiles in seconds on an empty cache
    import numpy as np
    import pymc as pm
    with pm.Model() as model:
        weight = pm.Data("obs_weight", np.ones(3))
        a = pm.LogNormal("a", 0.0, 1.0)
        pm.Potential("lik", (weight * pm.logp(pm.Normal.dist(a, 1.0), [0.5, 1.0, 1.5])).sum())
    n_obs = 3
elif sys.argv[1] == "vector":  # a vector of parameters: nutpie gives its sizes as NumPy ints
    import numpy as np
    import pymc as pm
    with pm.Model(coords={"subject": ["a", "b", "c"]}) as model:
        weight = pm.Data("obs_weight", np.ones(3))
        z = pm.Normal("z", 0.0, 1.0, dims="subject")
        mu = pm.Normal("mu", 0.0, 1.0)
        lik = pm.logp(pm.Normal.dist(mu + z, 1.0), [0.1, 0.5, -0.2])
        pm.Potential("lik", (weight * lik).sum())
    n_obs = 3
else:
    spec = load_spec(sys.argv[1])
    design = design_for(spec, Patient.from_csv("bundled:theophylline.csv", subject="1"))
    model = TwinModel.of(spec).pymc_model(design, weighted=True)
    n_obs = design.n_obs
compiled = compile_model(model)
draws = {}
with ieee_numerics():  # nutpie's own compilation under the numerics twinbayes compiles with
    against = [("nutpie", nutpie.compile_pymc_model(model, default_initialization_strategy="prior", jitter_rvs=set()))] if sys.argv[2] == "nutpie" else []
for label, c in [("ours", compiled), *against]:
    weighted = c.with_data(obs_weight=[1.0] * n_obs)
    idata = nutpie.sample(weighted, draws=100, tune=100, chains=2, seed=5, progress_bar=False)
    draws[label] = {v: idata.posterior[v].values.ravel().tolist() for v in idata.posterior.data_vars}
print(json.dumps({
    "records": model_records.STATS,
    "graphs": graph_cache.STATS,
    "hits": [compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits],
    "pytensor": compiled.logp_func is not None,
    "draws": draws["ours"],
    "same": draws["ours"] == draws.get("nutpie", draws["ours"]),
}))
"""


def _child(compiledir, model: str = "tiny", against: str = "") -> dict:
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, model, against],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _records(compiledir) -> list:
    return sorted(compiledir.rglob("twinbayes-models/*/*.json"))


def test_a_second_process_builds_a_twin_from_its_record(tmp_path):
    first = _child(tmp_path, "pk_1cmt_oral", "nutpie")
    assert first["records"] == {"hits": 0, "misses": 1, "stored": 1} and first["pytensor"]
    second = _child(tmp_path, "pk_1cmt_oral", "nutpie")
    assert second["records"] == {"hits": 1, "misses": 0, "stored": 0}
    assert second["hits"] == [1, 1]  # the machine code came from PyTensor's Numba cache ...
    assert second["graphs"] == {"hits": 0, "misses": 0, "stored": 0}  # ... nothing was rewritten
    assert not second["pytensor"]  # ... nor linked
    assert second["draws"] == first["draws"] and first["same"] and second["same"]


def test_a_model_with_a_vector_parameter_is_recorded_and_built_from_its_record(tmp_path):
    """A population twin's deviations are a vector: its record is stored (plain JSON ints) and
    the next process builds the model from it, sampling nutpie's own draws."""
    first = _child(tmp_path, "vector", "nutpie")
    assert first["records"] == {"hits": 0, "misses": 1, "stored": 1} and first["same"]
    second = _child(tmp_path, "vector", "nutpie")
    assert second["records"] == {"hits": 1, "misses": 0, "stored": 0} and second["same"]
    assert second["draws"] == first["draws"] and len(second["draws"]["z"]) == 3 * 200


def test_a_record_without_machine_code_or_damaged_falls_back_to_compiling(tmp_path):
    first = _child(tmp_path)
    (path,) = _records(tmp_path)
    stored = ModelRecord.from_json(path.read_text())
    assert _child(tmp_path)["records"]["hits"] == 1

    # the machine code gone (an emptied Numba cache), the record stays: compiled again, same draws
    for numba_dir in tmp_path.rglob("numba"):
        shutil.rmtree(numba_dir)
    again = _child(tmp_path)
    assert again["records"]["hits"] == 1 and again["pytensor"] and again["hits"] == [0, 0]
    assert again["draws"] == first["draws"]

    # a damaged record is a miss: compiled (from the caches) and stored again
    path.write_text(path.read_text().replace('"n_dim": ', '"n_dim": -'))
    damaged = _child(tmp_path)
    assert damaged["records"] == {"hits": 0, "misses": 1, "stored": 1} and damaged["pytensor"]
    assert damaged["draws"] == first["draws"]
    assert ModelRecord.from_json(path.read_text()) == stored  # repaired


def _record(**changes) -> str:
    fields = dict(
        format="twinbayes-model-record-1",
        n_dim=2,
        n_expanded=3,
        names=["a_log__", "b", "a"],
        slices=[[0, 1], [1, 2], [2, 3]],
        shapes=[[], [], []],
        reparameterized=["a_log__"],
        logp_shared=["y"],
        expand_shared=[],
        logp_key="0" * 64,
        expand_key="f" * 64,
    )
    return json.dumps({**fields, **changes})


def test_a_record_is_read_only_when_well_formed():
    record = ModelRecord.from_json(_record())
    assert record.shape_info == (
        ["a_log__", "b", "a"],
        [slice(0, 1), slice(1, 2), slice(2, 3)],
        [(), (), ()],
    )
    assert ModelRecord.from_json(record.to_json()) == record
    for bad in (
        {"format": "other"},
        {"n_dim": -1},
        {"n_dim": 2.0},
        {"n_dim": True},
        {"names": "a"},
        {"names": ["a", 1, "c"]},
        {"slices": [[0, 1]]},
        {"shapes": [[-1], [], []]},
        {"logp_key": "0" * 63},
        {"expand_key": "import os" + "0" * 55},
    ):
        with pytest.raises((ValueError, TypeError)):
            ModelRecord.from_json(_record(**bad))
    with pytest.raises(ValueError):
        ModelRecord.from_json("[1, 2]")


def _model(prior_sd: float = 1.0, n: int = 5, values: float = 1.0, name: str = "y"):
    with pm.Model() as model:
        data = pm.Data(name, np.full(n, values))
        a = pm.LogNormal("a", 0.0, prior_sd)
        b = pm.Normal("b", 0.0, 1.0)
        pm.Normal("obs", mu=a * data + b, sigma=1.0, observed=np.zeros(n))
    return model


def test_the_fingerprint_follows_what_is_compiled_not_the_data_values():
    key = model_records.fingerprint(_model(), TEMPLATES).key
    assert model_records.fingerprint(_model(), TEMPLATES).key == key  # built again: same record
    assert model_records.fingerprint(_model(values=7.0), TEMPLATES).key == key  # with_data's job
    for other in (
        _model(prior_sd=2.0),  # a constant in the density
        _model(n=6),  # the data's shape (the callbacks' source fixes it)
        _model(name="z"),  # the shared data's name (how the record finds it)
    ):
        assert model_records.fingerprint(other, TEMPLATES).key != key
    assert model_records.fingerprint(_model(), TEMPLATES + " ").key != key  # the callbacks' source
    found = model_records.fingerprint(_model(), TEMPLATES)
    assert list(found.shared) == ["y"] and np.array_equal(found.shared["y"].get_value(), np.ones(5))
