"""PyTensor's rewritten graphs, cached across processes.

Every process that compiles a twin's log density asks PyTensor to rewrite its graph (canonicalise,
stabilise, specialise, fuse, make operations in place): 1-1.5 s per closed-form twin on 2 cores,
the largest part of a warm study's compile stage (``benchmarks/bench_study.py``).  The machine
code is already cached on disk by PyTensor's Numba backend; the rewriting was not.

:func:`rewrites_cached` makes PyTensor's function compiler, and ``pytensor.graph.rewrite_graph``
of one variable (nutpie's rewriting of each log density before its gradient), look up the
rewritten graph on disk:

* the *key* is a SHA-256 of the graph before rewriting (operations with their parameters,
  constants with their bytes, types, the wiring), of the compile mode and of the library versions;
* a hit is used only if the stored graph-before-rewriting equals this one by PyTensor's own test
  (:func:`pytensor.graph.basic.equal_computations`, the same ``Op.__eq__`` and constant equality
  its merge rewriter trusts); anything else (miss, unreadable entry, graph that cannot be pickled)
  falls back to rewriting;
* the stored graph-after-rewriting is wired to this graph's inputs and replaces its outputs, so
  PyTensor links exactly the graph its rewriter produced in the first process: same machine code,
  same numbers (bit-identical study results with and without the cache: ``tests/test_graph_cache.py``
  and the cold/warm digests of ``benchmarks/bench_study.py``).

Entries live under PyTensor's compile directory (``config.compiledir``), beside its Numba cache,
so an empty compile directory means an empty cache.  They are pickles written by this user's own
processes into this user's compile directory, as PyTensor's and Numba's own cache entries are.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import tempfile
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np

from .speed import private_speedups

__all__ = ["rewrites_cached", "graph_key", "cache_dir", "remember", "remembered"]

_log = logging.getLogger(__name__)
_FORMAT = "twinbayes-graph-cache-1"
STATS = {"hits": 0, "misses": 0, "stored": 0}
"""Counts of this process (for tests and benchmarks)."""


def cache_dir() -> Path:
    """Where rewritten graphs are kept: ``<PyTensor compiledir>/twinbayes-graphs``."""
    from pytensor import config

    return Path(config.compiledir) / "twinbayes-graphs"


def _seen_path(label: str) -> Path:
    return cache_dir() / "seen" / hashlib.sha256(f"{_versions()}\n{label}".encode()).hexdigest()


def remember(label: str) -> None:
    """Note that the model named ``label`` was compiled into this cache (a hint, never trusted)."""
    try:
        path = _seen_path(label)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as err:
        _log.debug("graph cache: cannot remember %s (%s)", label, err)


def remembered(label: str) -> bool:
    """Whether :func:`remember` was called for ``label`` with this cache and these libraries.

    Only a hint for scheduling (:mod:`twinbayes.run.compile_ahead`): what is actually reused is
    decided per graph, by :func:`rewrites_cached` and PyTensor's Numba cache.
    """
    return _seen_path(label).exists()


def _versions() -> str:
    return ";".join(f"{p}={version(p)}" for p in ("pytensor", "pymc", "numba", "numpy"))


def _op_text(op) -> str:
    props = getattr(op, "__props__", None)
    if props:
        body = ",".join(f"{p}={_value_text(getattr(op, p))}" for p in props)
    else:
        body = str(op)
    return f"{type(op).__module__}.{type(op).__qualname__}({body})"


def _value_text(value) -> str:
    if hasattr(value, "__props__") or hasattr(type(value), "impl"):
        return _op_text(value)
    if isinstance(value, np.ndarray | np.generic) and value.dtype != object:
        value = np.asarray(value)
        return f"array({value.dtype},{value.shape},{hashlib.sha256(value.tobytes()).hexdigest()})"
    if isinstance(value, tuple | list):
        return "(" + ",".join(_value_text(v) for v in value) + ")"
    return repr(value)


def mode_text(mode) -> str:
    """The linker and the rewrite query of a compile mode (their reprs carry addresses)."""
    query = mode.provided_optimizer
    if hasattr(query, "include"):
        query = (
            f"include={sorted(query.include)} require={sorted(query.require)} "
            f"exclude={sorted(query.exclude)} subquery={sorted(query.subquery)} "
            f"cutoff={query.position_cutoff} extra={[repr(r) for r in query.extra_rewrites]}"
        )
    return f"{type(mode.linker).__qualname__} {mode.linker!r} {query}"


def graph_key(fgraph, mode) -> str:
    """SHA-256 of ``fgraph`` before rewriting, the compile ``mode`` and the library versions.

    ``mode`` is a PyTensor compile mode, or a text naming another rewriting (``rewrite_graph``'s
    query).  Variables are numbered in order of appearance (inputs, then each node's outputs in
    topological order), so names PyTensor gives automatically do not enter the key.
    """
    context = mode if isinstance(mode, str) else mode_text(mode)
    h = hashlib.sha256(f"{_FORMAT}\n{_versions()}\n{context}\n".encode())
    index: dict = {}
    for i, var in enumerate(fgraph.inputs):
        index[var] = f"i{i}"
        h.update(f"in {i} {var.type}\n".encode())
    for n, node in enumerate(fgraph.toposort()):
        args = []
        for var in node.inputs:
            if var not in index:  # a constant
                index[var] = f"c{len(index)}"
                h.update(f"const {index[var]} {var.type} {_value_text(var.data)}\n".encode())
            args.append(index[var])
        for j, out in enumerate(node.outputs):
            index[out] = f"n{n}.{j}"
        h.update(
            f"node {n} {_op_text(node.op)} {args} {[str(o.type) for o in node.outputs]}\n".encode()
        )
    outs = [index.get(o, "?") for o in fgraph.outputs]
    h.update(f"out {outs}\n".encode())
    return h.hexdigest()


def _detached(fgraph) -> tuple[list, list]:
    """A copy of ``fgraph``'s inputs and outputs, without its features (what is pickled)."""
    copy, _ = fgraph.clone_get_equiv(attach_feature=False)
    return list(copy.inputs), list(copy.outputs)


def write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a concurrent reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


def _store(path: Path, before: tuple[list, list], fgraph) -> None:
    entry = (_FORMAT, before, _detached(fgraph))
    write_atomically(path, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))


def _load(path: Path, fgraph, targets: list | None = None):
    """The stored rewritten outputs wired to ``targets`` (default ``fgraph``'s inputs), or ``None``."""
    from pytensor.graph.basic import equal_computations
    from pytensor.graph.replace import graph_replace

    try:
        fmt, before, after = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception as err:  # an unreadable entry is a miss, never an error
        _log.debug("graph cache entry %s unreadable: %s", path, err)
        return None
    (in_before, out_before), (in_after, out_after) = before, after
    if (
        fmt != _FORMAT
        or len(in_before) != len(fgraph.inputs)
        or len(in_after) != len(fgraph.inputs)
    ):
        return None
    if not equal_computations(out_before, fgraph.outputs, in_before, fgraph.inputs):
        return None
    targets = fgraph.inputs if targets is None else targets
    return graph_replace(out_after, dict(zip(in_after, targets)), strict=False)


def _cached_prepare_fgraph(original):
    """PyTensor's ``FunctionMaker.prepare_fgraph`` with the disk lookup in front of ``original``."""
    from pytensor.graph.destroyhandler import DestroyHandler

    def prepare_fgraph(inputs, outputs, additional_outputs, fgraph, mode, profile):
        try:
            key = graph_key(fgraph, mode)
            reusable = len(set(fgraph.outputs)) == len(fgraph.outputs) and not (
                set(fgraph.outputs) & set(fgraph.inputs)
            )
        except Exception as err:  # an Op the key cannot describe: rewrite as usual
            _log.debug("graph cache: no key (%s)", err)
            reusable = False
        if not reusable:  # outputs that repeat or are inputs cannot be swapped in place
            return original(inputs, outputs, additional_outputs, fgraph, mode, profile)
        path = cache_dir() / key[:2] / f"{key}.pkl"
        new_outputs = _load(path, fgraph)
        if new_outputs is not None:
            if not hasattr(fgraph, "destroyers"):  # the rewriter would have attached it
                fgraph.attach_feature(DestroyHandler())
            fgraph.replace_all(list(zip(fgraph.outputs, new_outputs)), reason="graph cache")
            STATS["hits"] += 1
            return None
        STATS["misses"] += 1
        try:  # only a miss stores the graph before rewriting, which changes fgraph in place
            before = _detached(fgraph)
        except Exception as err:
            _log.debug("graph cache: not stored (%s)", err)
            return original(inputs, outputs, additional_outputs, fgraph, mode, profile)
        result = original(inputs, outputs, additional_outputs, fgraph, mode, profile)
        try:
            _store(path, before, fgraph)
            STATS["stored"] += 1
        except Exception as err:  # a graph that cannot be pickled is simply not cached
            _log.debug("graph cache: not stored (%s)", err)
        return result

    return prepare_fgraph


def _cached_rewrite_graph(original):
    """``pytensor.graph.rewrite_graph`` of one variable with the disk lookup in front of ``original``.

    nutpie rewrites each log density this way (canonicalize, stabilize) before differentiating
    it.  The graph is keyed and compared on a clone whose inputs are the original's non-constant
    roots (value variables, shared data); a hit is wired back to those roots, as ``original``
    returns the rewritten variable over them.
    """
    from pytensor.graph.basic import Constant, Variable
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.traversal import graph_inputs

    def rewrite_graph(graph, include=("canonicalize",), custom_rewrite=None, clone=False, **kw):
        if not isinstance(graph, Variable) or custom_rewrite is not None:
            return original(graph, include, custom_rewrite, clone, **kw)
        try:
            roots = [v for v in graph_inputs([graph]) if not isinstance(v, Constant)]
            probe = FunctionGraph(roots, [graph], clone=True)
            query = f"rewrite_graph include={list(include)} kwargs={sorted(kw.items())!r}"
            key = graph_key(probe, query)
        except Exception as err:  # an Op the key cannot describe: rewrite as usual
            _log.debug("graph cache: no key (%s)", err)
            return original(graph, include, custom_rewrite, clone, **kw)
        path = cache_dir() / key[:2] / f"{key}.pkl"
        hit = _load(path, probe, roots)
        if hit is not None:
            STATS["hits"] += 1
            return hit[0]
        STATS["misses"] += 1
        result = original(graph, include, custom_rewrite, clone, **kw)
        try:
            after = FunctionGraph(roots, [result], clone=True)
            _store(path, _detached(probe), after)
            STATS["stored"] += 1
        except Exception as err:  # a graph that cannot be pickled is simply not cached
            _log.debug("graph cache: not stored (%s)", err)
        return result

    return rewrite_graph


_LOCK = threading.Lock()
_ACTIVE = {"depth": 0, "saved": None, "rewrite_graph": None}


@contextlib.contextmanager
def rewrites_cached() -> Iterator[None]:
    """Within the block, PyTensor functions (and ``pytensor.graph.rewrite_graph`` of one
    variable, as nutpie calls it) reuse rewritten graphs stored on disk (module doc).

    Nested and concurrent blocks (threads) share one installation, removed when the last ends.
    Nothing is installed with the private speed-ups off (:mod:`twinbayes.fitting.compile.speed`).
    """
    if (
        not private_speedups()
    ):  # twinbayes.fitting.compile.speed: PyTensor rewrites as it always would
        yield
        return
    import pytensor.graph
    from pytensor.compile import maker

    with _LOCK:
        if _ACTIVE["depth"] == 0:
            saved = maker.FunctionMaker.__dict__["prepare_fgraph"]  # the staticmethod itself
            _ACTIVE["saved"] = saved
            patched = _cached_prepare_fgraph(saved.__func__)
            maker.FunctionMaker.prepare_fgraph = staticmethod(patched)
            _ACTIVE["rewrite_graph"] = pytensor.graph.rewrite_graph
            pytensor.graph.rewrite_graph = _cached_rewrite_graph(pytensor.graph.rewrite_graph)
        _ACTIVE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE["depth"] -= 1
            if _ACTIVE["depth"] == 0:
                maker.FunctionMaker.prepare_fgraph = _ACTIVE["saved"]
                pytensor.graph.rewrite_graph = _ACTIVE["rewrite_graph"]
