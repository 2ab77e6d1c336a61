"""The speed machinery's door (issue 37): off, only public APIs run and the draws are the same bits;
an upstream that changed falls back to the public path with a warning."""

import hashlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

CHILD = r"""
import hashlib, sys
import lazy_loader
original = lazy_loader.load
from twinbayes import Patient, fit, load_spec
from twinbayes.fitting.compile.import_speed import import_and_freeze
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.inputs.library import data_path
from twinbayes.fitting.compile import compiled_model
from twinbayes.fitting.compile import graph_cache
import_and_freeze()  # as the twinbayes command does: on, it patches lazy_loader
calls = []
real = compiled_model._nutpie_compiled
compiled_model._nutpie_compiled = lambda m, *a: calls.append(1) or real(m, *a)
patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
twin = fit(load_spec("pk_1cmt_oral"), patient, seed=5, draws=300, tune=300, chains=2,
           ladder=NO_LADDER, progress=False)
post = twin.idata["posterior"].to_dataset()
digest = hashlib.sha256(b"".join(post[v].values.tobytes() for v in sorted(post.data_vars)))
print(digest.hexdigest(), len(calls), lazy_loader.load is original, graph_cache.STATS["misses"])
"""


def _child(tmp_path, private: str) -> list[str]:
    env = {
        **os.environ,
        "TWINBAYES_PRIVATE_SPEEDUPS": private,
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / private}",  # each its own cold cache
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()[-4:]


def test_a_fit_with_the_speedups_off_samples_the_same_bits(tmp_path):
    on, off = _child(tmp_path, "1"), _child(tmp_path, "0")
    assert on[0] == off[0]  # the posterior draws, bit for bit
    assert on[1] == "0" and off[1] == "1"  # off: nutpie.compile_pymc_model compiled it
    assert on[2] == "False" and off[2] == "True"  # off: lazy_loader untouched
    assert int(on[3]) > 0 and off[3] == "0"  # off: PyTensor's rewriting was never wrapped


def test_a_changed_upstream_falls_back_to_the_public_path_with_a_warning(monkeypatch):
    """Where nutpie's internals are not what the private path expects (an attribute gone, a
    signature changed), the model is compiled by ``nutpie.compile_pymc_model``: same draws."""
    import pymc as pm

    from twinbayes.fitting.compile import compiled_model
    from twinbayes.fitting.compile.compiled_model import compile_model, sample_nuts

    with pm.Model() as model:
        pm.Normal("x", 1.0, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private = sample_nuts(
            compile_model(model, from_records=False), draws=200, tune=200, chains=1, seed=3
        )

    def changed(*args, **kwargs):
        raise AttributeError("module 'nutpie.compile_pymc' has no attribute '_make_functions'")

    monkeypatch.setattr(compiled_model, "_compile_model", changed)
    with pytest.warns(RuntimeWarning, match="nutpie's internals changed"):
        compiled = compile_model(model, from_records=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        public = sample_nuts(compiled, draws=200, tune=200, chains=1, seed=3)
    x = [np.asarray(t.posterior["x"]).tobytes() for t in (public, private)]
    assert hashlib.sha256(x[0]).digest() == hashlib.sha256(x[1]).digest()
