"""The package's import graph (issue 37): no cycle, no private name imported across modules.

Every ``import`` and ``from ... import`` in every module of ``twinbayes`` counts, at module level
and inside functions alike (a function-level import is a cycle that waits for a call); imports
under ``if TYPE_CHECKING:`` are annotations and do not run.  Importing ``a.b.c`` from outside the
package ``a.b`` also runs ``a/b/__init__.py``: that is an edge too (it is how ``forward`` ->
``comparison.lfo`` -> ``comparison/__init__`` -> ``sequential`` -> ``twin_disagreement`` ->
``forward`` once closed a cycle).  The graph is built with :mod:`ast` alone (nothing imported); its cycles are the strongly
connected components (:func:`scipy.sparse.csgraph.connected_components`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parent.parent / "twinbayes"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imports(name: str) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import of module ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, None) if sub in MODULES else (target, a.name))
    return out


class Graph:
    """Modules and the edges between them; strongly connected components by SciPy."""

    def __init__(self, nodes) -> None:
        self.nodes, self.edges = list(nodes), set()

    def add_edge(self, a: str, b: str) -> None:
        self.edges.add((a, b))

    def has_edge(self, a: str, b: str) -> bool:
        return (a, b) in self.edges

    def cycles(self) -> list[list[str]]:
        """The strongly connected components of more than one module."""
        at = {n: i for i, n in enumerate(self.nodes)}
        rows = [at[a] for a, _ in self.edges]
        cols = [at[b] for _, b in self.edges]
        n = len(self.nodes)
        matrix = coo_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        _, label = connected_components(matrix, directed=True, connection="strong")
        groups = [[m for m, lab in zip(self.nodes, label) if lab == k] for k in set(label)]
        return sorted(sorted(g) for g in groups if len(g) > 1)


def _graph() -> tuple[Graph, list[tuple[str, str, str]]]:
    graph, private = Graph(MODULES), []
    for name in MODULES:
        for target, taken in _imports(name):
            if target not in MODULES or target == name:
                continue
            graph.add_edge(name, target)
            parent = target.rpartition(".")[0]
            while parent and parent != "twinbayes":  # the packages an import runs on the way
                if not (name == parent or name.startswith(parent + ".")):
                    graph.add_edge(name, parent)
                parent = parent.rpartition(".")[0]
            if taken and taken.startswith("_") and not taken.startswith("__"):
                private.append((name, target, taken))
    return graph, private


def test_the_graph_sees_the_package():
    graph, _ = _graph()
    assert {
        "twinbayes.fitting.twin",
        "twinbayes.comparison.lfo",
        "twinbayes.decisions.forward",
    } <= set(graph.nodes)
    assert graph.has_edge("twinbayes.decisions.forward", "twinbayes.comparison.lfo")
    assert graph.has_edge(
        "twinbayes.decisions.forward", "twinbayes.comparison"
    )  # the package it runs


def test_no_import_cycle():
    graph, _ = _graph()
    cycles = graph.cycles()
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_is_imported_across_modules():
    _, private = _graph()
    assert not private, "private names imported across modules: " + ", ".join(
        f"{a} imports {c} from {b}" for a, b, c in private
    )


@pytest.mark.parametrize(
    "text, cyclic",
    [
        ("import twinbayes.b", True),
        ("from . import b", True),
        ("if TYPE_CHECKING:\n    from .b import x", False),
        ("def f():\n    from .b import x", True),
    ],
)
def test_the_check_finds_a_planted_cycle(tmp_path, monkeypatch, text, cyclic):
    """The check itself can fail: two modules that import each other are a cycle, at module level
    or in a function; a TYPE_CHECKING import is not."""
    pkg = tmp_path / "twinbayes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(text + "\n")
    (pkg / "b.py").write_text("from .a import y\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    monkeypatch.setattr(__import__(__name__), "MODULES", _modules())
    graph, _ = _graph()
    assert bool(graph.cycles()) == cyclic
