"""The lazy_loader workaround: ArviZ imports without inspect.stack, and missing modules fail as before."""

import subprocess
import sys

PROBE = """
import inspect, sys
{setup}
import lazy_loader
mod = lazy_loader.load("no_such_module_twinbayes")
try:
    mod.anything
except ModuleNotFoundError as exc:
    print(exc)
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout


def test_arviz_imports_without_walking_the_stack():
    code = (
        "import inspect\n"
        "import twinbayes\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('inspect.stack was called')\n"
        "inspect.stack = refuse\n"
        "import arviz_base, nutpie\n"
        "print('ok')\n"
    )
    assert _run(code).strip() == "ok"


def test_a_missing_module_fails_on_first_use_as_without_the_workaround():
    plain = _run(PROBE.format(setup=""))
    patched = _run(PROBE.format(setup="import twinbayes"))
    assert "No module named 'no_such_module_twinbayes'" in plain
    assert "line 5" in plain and 'mod = lazy_loader.load("no_such' in plain  # the caller's line
    assert patched == plain
