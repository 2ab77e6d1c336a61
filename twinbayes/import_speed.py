"""Workarounds for slow imports in the stack (each measured; each a no-op where it does not apply).

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

__all__ = ["patch_lazy_loader"]


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
