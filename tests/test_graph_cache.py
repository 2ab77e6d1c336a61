"""Rewritten PyTensor graphs cached across processes (issue #14): a hit links exactly the graph
PyTensor's rewriter produced, a changed graph misses, a bad entry is a miss, and a second process
samples bit-identical draws with the cache, without it, and filling it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.graph.basic import equal_computations

from twinbayes.fitting.compile import graph_cache

MODE = Mode(linker="py", optimizer="fast_run")


X = np.array([-30.0, 0.5])


def _expected(x, c, data=(1.0, 2.0)):
    return np.logaddexp(0.0, x) * c + x**2 + np.asarray(data)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(graph_cache, "STATS", {"hits": 0, "misses": 0, "stored": 0})
    return tmp_path


def _function(c: float):
    """log(1 + exp(x)) * c + x**2, built afresh (new variables, new automatic names)."""
    x = pt.dvector("x")
    shared = pytensor.shared(np.array([1.0, 2.0]), name="data")
    return pytensor.function([x], pt.log(1 + pt.exp(x)) * c + x**2 + shared, mode=MODE)


def test_a_hit_links_the_graph_the_rewriter_produced(cache):
    plain = _function(3.0)  # no cache: PyTensor's own rewriting
    with graph_cache.rewrites_cached():
        first = _function(3.0)
        second = _function(3.0)
    assert graph_cache.STATS == {"hits": 1, "misses": 1, "stored": 1}
    for f in (first, second):
        assert equal_computations(
            f.maker.fgraph.outputs,
            plain.maker.fgraph.outputs,
            f.maker.fgraph.inputs,
            plain.maker.fgraph.inputs,
        )
    assert np.array_equal(second(X), plain(X)) and np.allclose(second(X), _expected(X, 3.0))
    # the shared data are this function's own: a new value is seen by the cached graph
    (shared,) = [i.variable for i in second.maker.inputs if i.implicit]
    shared.set_value(np.array([10.0, 20.0]))
    assert np.allclose(second(X), _expected(X, 3.0, (10.0, 20.0)))


def test_a_different_constant_misses(cache):
    with graph_cache.rewrites_cached():
        _function(3.0)
        other = _function(4.0)
    assert graph_cache.STATS["hits"] == 0 and graph_cache.STATS["misses"] == 2
    assert np.allclose(other(X), _expected(X, 4.0))


def test_an_entry_for_another_graph_or_an_unreadable_one_is_a_miss(cache, monkeypatch):
    monkeypatch.setattr(graph_cache, "graph_key", lambda fgraph, mode: "ab" * 32)  # all collide
    with graph_cache.rewrites_cached():
        _function(3.0)  # stored under the shared key
        other = _function(4.0)  # same key, another graph: PyTensor's equality test refuses it
        assert graph_cache.STATS == {"hits": 0, "misses": 2, "stored": 2}
        assert np.allclose(other(X), _expected(X, 4.0))
        (entry,) = cache.rglob("*.pkl")
        entry.write_bytes(b"not a pickle")
        again = _function(4.0)
        assert np.allclose(again(X), _expected(X, 4.0))
    assert graph_cache.STATS["hits"] == 0 and graph_cache.STATS["misses"] == 3


def test_the_key_does_not_depend_on_automatic_names():
    keys = set()
    for _ in range(2):
        x = pt.dvector()  # unnamed: PyTensor numbers it
        fg = pytensor.graph.fg.FunctionGraph([x], [pt.exp(x).sum() * 2.0])
        keys.add(graph_cache.graph_key(fg, MODE))
    assert len(keys) == 1


CHILD = r"""
import json, sys
import nutpie
from twinbayes import Patient, load_spec
from twinbayes.fitting.compile import graph_cache
from twinbayes.fitting.compile.compiled_model import _compile_model, compile_model
from twinbayes.dynamics.design import design_for
from twinbayes.model.twin_model import TwinModel, ieee_numerics
spec = load_spec("pk_1cmt_oral")
design = design_for(spec, Patient.from_csv("bundled:theophylline.csv", subject="1"))
model = TwinModel.of(spec).pymc_model(design, weighted=True)
if sys.argv[1] == "cached":  # the rewritten graphs from disk (no model records: see test_model_records)
    compiled = compile_model(model, from_records=False)
else:
    with ieee_numerics():  # as compile_model compiles
        compiled, _ = _compile_model(model)
idata = nutpie.sample(compiled, draws=100, tune=100, chains=2, seed=5, progress_bar=False)
draws = {v: idata.posterior[v].values.ravel().tolist() for v in idata.posterior.data_vars}
print(json.dumps({"stats": graph_cache.STATS, "draws": draws}))
"""


def _child(compiledir, how: str) -> dict:
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, how], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_hits_and_samples_the_same_draws(tmp_path):
    filling = _child(tmp_path, "cached")
    hitting = _child(tmp_path, "cached")
    without = _child(tmp_path, "uncached")
    assert filling["stats"]["hits"] == 0 and filling["stats"]["stored"] >= 2
    assert hitting["stats"]["misses"] == 0 and hitting["stats"]["hits"] >= 2
    assert hitting["draws"] == filling["draws"] == without["draws"]


AHEAD = r"""
import json, time
from pathlib import Path
from twinbayes import Patient, load_spec
from twinbayes.fitting.compile import graph_cache
from twinbayes.fitting.compile import model_records
from twinbayes.run.compile_ahead import CompileAhead
from twinbayes.dynamics.design import design_for
from twinbayes.fitting.twin import compile_label, compiled_for
from twinbayes.model.twin_model import TwinModel
patient = Patient.from_csv("bundled:theophylline.csv", subject="1")
sources = ["pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_oral"]

def compile_here(source):
    spec = load_spec(source)
    design = design_for(spec, patient)
    seen = graph_cache.remembered(compile_label(spec, design))
    before, records = dict(graph_cache.STATS), dict(model_records.STATS)
    compiled_for(spec, design, TwinModel.of(spec).pymc_model(design, weighted=True))
    graphs = {k: graph_cache.STATS[k] - before[k] for k in before}
    return seen, graphs, {k: model_records.STATS[k] - records[k] for k in records}

with CompileAhead(sources, patient) as ahead:
    started = ahead._proc is not None
    deadline = time.time() + 120
    while not Path(ahead._claims, "twin-3").exists() and time.time() < deadline:
        time.sleep(0.05)  # the worker starts with the last twin
    ahead.wait(2)  # not claimed by the worker: this process compiles it
    second = compile_here(sources[1])
    ahead.wait(3)  # the worker's: wait for it
    third = compile_here(sources[2])
with CompileAhead(sources, patient) as again:
    restarted = again._proc is not None
print(json.dumps({"started": started, "second": second, "third": third, "restarted": restarted}))
"""


def test_the_worker_and_the_study_compile_different_twins_once_each(tmp_path):
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"}
    proc = subprocess.run(
        [sys.executable, "-c", AHEAD], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["started"]
    seen, graphs, records = out["second"]  # twin 2: not compiled by the worker, compiled here
    assert not seen and graphs["misses"] >= 2 and records == {"hits": 0, "misses": 1, "stored": 1}
    seen, graphs, records = out["third"]  # twin 3: the worker compiled it, this process reuses it
    assert seen and graphs == {"hits": 0, "misses": 0, "stored": 0}  # nothing left to rewrite:
    assert records == {"hits": 1, "misses": 0, "stored": 0}  # the worker's record was enough
    assert not out["restarted"]  # and on a warm machine no worker starts


def _logp(c: float):
    """A log density over a value variable and shared data, built afresh, as nutpie's input."""
    x = pt.dvector("x")
    shared = pytensor.shared(np.array([1.0, 2.0]), name="data")
    return x, shared, (pt.log(1 + pt.exp(x)) * c + x**2 + shared).sum()


def test_rewrite_graph_of_a_log_density_is_cached_like_functions(cache):
    """nutpie rewrites the log density (canonicalize, stabilize) before its gradient: a hit
    returns PyTensor's own rewrite, over this graph's value variable and shared data."""
    from pytensor.graph import rewrite_graph

    x0, shared0, logp0 = _logp(3.0)
    plain = rewrite_graph(logp0, include=["canonicalize", "stabilize"])
    with graph_cache.rewrites_cached():
        import pytensor.graph

        results = []
        for c in (3.0, 3.0, 4.0):
            x, shared, logp = _logp(c)
            out = pytensor.graph.rewrite_graph(logp, include=["canonicalize", "stabilize"])
            results.append((x, shared, out))
    assert graph_cache.STATS == {"hits": 1, "misses": 2, "stored": 2}
    assert pytensor.graph.rewrite_graph is rewrite_graph  # restored after the block
    (x1, shared1, first), (x2, shared2, second), (x3, _, other) = results
    for x, shared, out in ((x1, shared1, first), (x2, shared2, second)):
        assert equal_computations([out], [plain], [x, shared], [x0, shared0])
    f = pytensor.function([x2], second, mode=MODE)
    shared2.set_value(np.array([10.0, 20.0]))  # the hit reads this graph's own shared data
    assert np.isclose(f(X), _expected(X, 3.0, (10.0, 20.0)).sum())
    assert np.isclose(pytensor.function([x3], other, mode=MODE)(X), _expected(X, 4.0).sum())
