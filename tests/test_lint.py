"""The tree is ruff-clean (lint and format, settings in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail(
            "ruff is not installed: it is in the test extras (bash scripts/run-tests.sh installs it)"
        )
    return [exe]


@pytest.mark.parametrize(
    "args",
    [["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]],
    ids=["lint", "format"],
)
def test_ruff_clean(args):
    # --no-cache: the test writes nothing into the tree (tests/test_fuzz.py checks that)
    res = subprocess.run(_ruff() + args, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
