"""Every Python and shell block of README.md and docs/ runs as written (or says why it is not run).

Python blocks of one file run in order in one namespace. ``docs/comparison.md`` and
``docs/scenarios.md`` continue the README's session (they use its ``twins`` and ``comparison``),
as their text says.  Shell blocks run line by line with the project's ``.venv/bin`` first on PATH,
in an empty folder.  A block is skipped only when the line before it is
``<!-- not run by tests/test_doc_blocks.py: REASON -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash", "sh", "shell"}
NOT_CODE = {"text", "toml", "csv", "json"}
CONTINUES_README = {"comparison.md", "scenarios.md"}
SKIP = re.compile(r"<!-- not run by tests/test_doc_blocks\.py: (?P<reason>.+?) -->")


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    lang: str
    code: str
    skip_reason: str | None


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, with the skip reason written above each."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        i += 1
        while not lines[i].startswith("```"):
            i += 1
        above = SKIP.search(lines[start - 1]) if start else None
        code = "\n".join(lines[start + 1 : i])
        out.append(Block(path, start + 1, lang, code, above.group("reason") if above else None))
        i += 1
    return out


ALL = [b for f in DOCS for b in blocks(f)]


def test_every_block_says_its_language():
    unlabelled = [f"{b.file.name}:{b.line}" for b in ALL if b.lang not in RUN | NOT_CODE]
    assert not unlabelled, f"label these blocks (python, bash, text, toml, csv): {unlabelled}"


def test_skipped_blocks_give_a_reason():
    skipped = [b for b in ALL if b.skip_reason is not None]
    assert all(len(b.skip_reason) > 20 for b in skipped)
    print("\n".join(f"not run: {b.file.name}:{b.line}: {b.skip_reason}" for b in skipped))


def _python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang == "python" and b.skip_reason is None]


def _run_python(block: Block, namespace: dict) -> None:
    code = compile(block.code, f"{block.file.name}:{block.line}", "exec")
    exec(code, namespace)  # noqa: S102 - our own documentation


@pytest.fixture(scope="module")
def readme_session(tmp_path_factory, monkeypatch_module):
    """The namespace after the README's Python blocks (fits two twins: about a minute)."""
    matplotlib.use("Agg")
    monkeypatch_module.chdir(tmp_path_factory.mktemp("readme"))
    namespace: dict = {"__name__": "__doc_block__"}
    for block in _python_blocks(ROOT / "README.md"):
        _run_python(block, namespace)
    return namespace


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_readme_python_runs_and_gives_what_it_says(readme_session):
    import twinbayes as tb

    twins, comparison, result = (readme_session[k] for k in ("twins", "comparison", "result"))
    assert [t.name for t in twins] == ["pk_1cmt_oral", "pk_1cmt_oral_lag"]
    assert all(isinstance(t, tb.Twin) for t in twins)
    assert abs(sum(comparison.weights.values()) - 1) < 1e-9
    assert set(result.data.scenario.values) == {"320 mg q12h", "160 mg q6h"}


@pytest.mark.parametrize("name", sorted(CONTINUES_README))
def test_docs_python_continuing_the_readme_runs(readme_session, name):
    namespace = dict(readme_session)
    for block in _python_blocks(ROOT / "docs" / name):
        _run_python(block, namespace)


def test_other_docs_python_runs(tmp_path, monkeypatch):
    """Python blocks of the other docs pages, each page in a fresh namespace (none today)."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    for path in DOCS:
        if path.name == "README.md" or path.name in CONTINUES_README:
            continue
        namespace: dict = {"__name__": "__doc_block__"}
        for block in _python_blocks(path):
            _run_python(block, namespace)


SHELL = [b for b in ALL if b.lang in RUN - {"python"} and b.skip_reason is None]


@pytest.mark.parametrize("block", SHELL, ids=lambda b: f"{b.file.name}:{b.line}")
def test_shell_blocks_run(block, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{block.file.name}:{block.line}\n{proc.stdout}\n{proc.stderr}"


def test_csv_examples_are_valid_patient_files(tmp_path):
    from twinbayes import Patient

    for b in (b for b in ALL if b.lang == "csv"):
        path = tmp_path / f"line{b.line}.csv"
        path.write_text(b.code + "\n")
        Patient.from_csv(path)
