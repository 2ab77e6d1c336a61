"""One door for the speed machinery that reaches into other libraries' private internals.

twinbayes is faster where it uses internals that its dependencies do not promise to keep:

- :mod:`twinbayes.fitting.compile.compiled_model`: nutpie's ``compile_pymc._make_functions``,
  ``make_user_data`` and ``CompiledPyMCModel``, Numba's ``CFunc._compile_uncached`` (checked
  with nutpie 0.16.11 and Numba 0.68.0; pyproject bounds nutpie below 0.17);
- :mod:`twinbayes.fitting.compile.model_records`: the same, to rebuild a compiled model from its record;
- :mod:`twinbayes.fitting.compile.graph_cache`: PyTensor's ``FunctionMaker.prepare_fgraph`` and
  ``pytensor.graph.rewrite_graph`` (PyTensor 3.3.8; bounded below 4);
- :mod:`twinbayes.fitting.compile.import_speed`: ``lazy_loader.load`` (0.6) and xarray's
  ``namedarray.pycompat`` duck-array cache (2026.9; where an attribute is missing it changes
  nothing and says so by returning False).

Each place asks :func:`private_speedups` before it uses them and otherwise takes the public path
(``nutpie.compile_pymc_model``, PyTensor's own rewriting, plain imports).  Both paths give the
same draws bit for bit (``tests/test_speed_switch.py``).  Turn every one of them off with the
environment variable ``TWINBAYES_PRIVATE_SPEEDUPS=0`` (for a whole run, e.g. after an upgrade of
one of these packages), or for a block of Python code with :func:`speedups_off`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["ENV", "private_speedups", "speedups_off"]

ENV = "TWINBAYES_PRIVATE_SPEEDUPS"
"""``0`` turns off every use of a library's private internals (anything else: on)."""


def private_speedups() -> bool:
    """Whether the speed machinery may use libraries' private internals (read at each use)."""
    return os.environ.get(ENV, "1").strip() != "0"


@contextlib.contextmanager
def speedups_off() -> Iterator[None]:
    """Within the block, only public APIs (sets :data:`ENV` to ``0`` and restores it after)."""
    before = os.environ.get(ENV)
    os.environ[ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
