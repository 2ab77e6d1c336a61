"""The house by stage (issue 37): every module is in docs/architecture.md, and imports point down
the stages (run -> output -> decisions -> comparison -> fitting -> model -> dynamics -> spec/inputs
-> error), module-level and function-level imports alike."""

from __future__ import annotations

import re
from pathlib import Path

from test_import_graph import MODULES, ROOT, _graph

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
RANK = {
    "error": 0,
    "inputs": 1,
    "spec": 1,
    "dynamics": 2,
    "model": 3,
    "fitting": 4,
    "comparison": 5,
    "decisions": 6,
    "output": 7,
    "run": 8,
}
"""Stage of each top-level part of the package; the package itself (its public names import the
light parts at once, the rest lazily) ranks with ``spec`` and ``inputs``."""


def _stage(module: str) -> int:
    parts = module.split(".")
    return 1 if len(parts) == 1 else RANK[parts[1]]


def test_every_module_has_its_line_in_the_architecture_page():
    listed = set(re.findall(r"`([a-z_/]+\.py)`", DOC.read_text()))
    modules = {str(p.relative_to(ROOT)) for p in MODULES.values() if p.name != "__init__.py"}
    assert not modules - listed, (
        f"modules missing from docs/architecture.md: {sorted(modules - listed)}"
    )
    assert (
        not {m for m in listed if ("/" in m or m == "error.py") and not m.startswith("tests/")}
        - modules
    ), "docs/architecture.md names modules that do not exist"


def test_every_stage_of_the_package_has_a_rank():
    assert {name.split(".")[1] for name in MODULES if "." in name} <= set(RANK)


def test_imports_point_down_the_stages():
    graph, _ = _graph()
    upward = sorted((a, b) for a, b in graph.edges if _stage(a) < _stage(b))
    assert not upward, "imports from a lower stage to a higher one: " + ", ".join(
        f"{a} -> {b}" for a, b in upward
    )
