"""The documentation site builds with warnings as errors (mkdocs --strict), API pages included."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "state_amounts" in api and "disagreement" in api  # docstrings rendered


@pytest.mark.parametrize(
    "path", sorted((ROOT / "docs" / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_example_studies_load(path):
    """Every study in docs/examples is a valid study file (specs, data, scenarios resolved)."""
    from twinbayes.run.study import load_study

    study = load_study(path)
    assert study.specs and study.scenarios
