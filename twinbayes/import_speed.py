"""Import-time costs: workarounds for slow imports, and keeping imported objects out of GC.

``lazy_loader.load`` (used by ArviZ's ``arviz_base.io_numpyro`` for the optional JAX and
NumPyro) records where a missing module was asked for with :func:`inspect.stack`, which
reads the source of every frame on the stack and scans ``sys.modules`` for each: 0.4-0.8 s
per process on 2 cores, paid by every run, worker and test process that imports ArviZ
without JAX (the same pattern as IBM/import-tracker#36).  :func:`patch_lazy_loader` records
the one frame it needs instead; the proxy it returns behaves as before (it raises
``ModuleNotFoundError`` naming the caller's line on first use).
"""

from __future__ import annotations

import importlib.util
import linecache
import sys

__all__ = ["patch_lazy_loader", "import_and_freeze"]

STUDY_MODULES = (
    "twinbayes.fitting",
    "twinbayes.pipeline",
    "twinbayes.comparison",
    "twinbayes.plots",
    "twinbayes.report",
    "nutpie",
    "arviz_stats",
)
"""What a study run imports anyway (nutpie brings ArviZ and matplotlib)."""


def patch_lazy_loader() -> bool:
    """Make ``lazy_loader.load`` of a missing top-level module cheap; False where there is no lazy_loader."""
    try:
        import lazy_loader
    except ImportError:
        return False
    original = lazy_loader.load
    if getattr(original, "_twinbayes", False):
        return True

    def load(fullname, *, require=None, error_on_import=False, suppress_warning=False):
        if (
            require is None
            and not error_on_import
            and "." not in fullname
            and sys.modules.get(fullname) is None
            and importlib.util.find_spec(fullname) is None
        ):
            caller = sys._getframe(1)
            filename, lineno = caller.f_code.co_filename, caller.f_lineno
            line = linecache.getline(filename, lineno)
            return lazy_loader.DelayedImportErrorModule(
                {
                    "filename": filename,
                    "lineno": lineno,
                    "function": caller.f_code.co_name,
                    "code_context": [line] if line else None,
                },
                "DelayedImportErrorModule",
                message=f"No module named '{fullname}'",
            )
        return original(
            fullname,
            require=require,
            error_on_import=error_on_import,
            suppress_warning=suppress_warning,
        )

    load._twinbayes = True
    load.__doc__ = original.__doc__
    lazy_loader.load = load
    return True


def import_and_freeze(modules: tuple[str, ...] = STUDY_MODULES) -> None:
    """Import what a study uses, then keep those objects out of garbage collection (:func:`gc.freeze`).

    The libraries' few hundred thousand long-lived objects (modules, functions, classes,
    docstrings) are otherwise scanned by every full collection of the run: measured at 0.6 s of
    a warm example study on 2 cores.  PyTensor's ``traceback__limit`` is set to 0: it records
    the creating stack (for its own error messages) on each of the thousands of variables a
    twin's log density and gradient are built from.  For processes twinbayes owns (the
    ``twinbayes`` command, the compile-ahead worker); a library call leaves the caller's
    collector and configuration alone.
    """
    import gc
    from importlib import import_module

    for name in modules:
        import_module(name)
    from pytensor import config

    config.traceback__limit = 0  # no stack trace on every graph variable (error messages only)
    gc.freeze()
