"""Import-time costs: workarounds for slow imports, and keeping imported objects out of GC.

Nothing here runs on ``import twinbayes``: the ``twinbayes`` command and the processes it starts
call these for themselves (:func:`import_and_freeze`); a library user's process is left as it is.

``lazy_loader.load`` (used by ArviZ's ``arviz_base.io_numpyro`` for the optional JAX and
NumPyro) records where a missing module was asked for with :func:`inspect.stack`, which
reads the source of every frame on the stack and scans ``sys.modules`` for each: 0.4-0.8 s
per process on 2 cores, paid by every run, worker and test process that imports ArviZ
without JAX (the same pattern as IBM/import-tracker#36).  :func:`patch_lazy_loader` records
the one frame it needs instead; the proxy it returns behaves as before (it raises
``ModuleNotFoundError`` naming the caller's line on first use).

xarray asks whether an array is one of dask's or pint's the first time it indexes or writes
anything, importing both packages to find out (about 0.3 s on one core; twinbayes installs dask
for cohorts only and never hands xarray a pint quantity).  In the processes twinbayes owns,
:func:`defer_dask_and_pint` lets xarray import them only once something else has: an object can
only be a dask or pint array after its package was imported.
"""

from __future__ import annotations

import importlib.util
import linecache
import sys

from .speed import private_speedups

__all__ = ["patch_lazy_loader", "defer_dask_and_pint", "import_and_freeze"]

STUDY_MODULES = (
    "twinbayes.fitting.twin",
    "twinbayes.run.pipeline",
    "twinbayes.comparison",
    "twinbayes.output.plots",
    "twinbayes.output.report",
    "nutpie",
    "arviz_stats",
)
"""What a study run imports anyway (nutpie brings ArviZ and matplotlib)."""


def patch_lazy_loader() -> bool:
    """Make ``lazy_loader.load`` of a missing top-level module cheap; False where there is no
    lazy_loader or the private speed-ups are off (:mod:`twinbayes.fitting.compile.speed`)."""
    if not private_speedups():
        return False
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


_DEFERRED = ("dask", "pint")
"""Duck-array packages xarray would import only to ask whether an array is theirs."""


def defer_dask_and_pint() -> bool:
    """Keep xarray from importing dask and pint just to check arrays against their types.

    xarray caches, per package, whether it is installed and its array type
    (``xarray.namedarray.pycompat.DuckArrayModule``, built by importing the package), and asks
    :func:`xarray.namedarray.utils.is_dask_collection` (which imports ``dask.base`` whenever dask
    is installed).  Here both answer "not an array of that package" while the package is not
    imported, and as xarray would once it is (:class:`_UntilImported`).  False, changing nothing,
    where xarray lacks these internals or a package is already imported.
    """
    try:
        from xarray.namedarray import pycompat, utils
    except ImportError:
        return False
    if not private_speedups():
        return False
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    real = getattr(utils, "is_dask_collection", None)
    if not isinstance(cache, dict) or real is None or any(m in sys.modules for m in _DEFERRED):
        return False
    if getattr(real, "_twinbayes", False):
        return True
    for mod in _DEFERRED:
        cache.setdefault(mod, _UntilImported(mod, pycompat.DuckArrayModule))

    def is_dask_collection(x: object) -> bool:
        return "dask" in sys.modules and real(x)

    is_dask_collection._twinbayes = True
    utils.is_dask_collection = is_dask_collection
    return True


class _UntilImported:
    """xarray's ``DuckArrayModule`` for ``mod``: "not available" while ``mod`` is not imported,
    xarray's own answer (built on first use) once it is."""

    def __init__(self, mod: str, duck_array_module: type):
        self._mod, self._make, self._real = mod, duck_array_module, None

    def _resolved(self):
        if self._real is None and self._mod in sys.modules:
            self._real = self._make(self._mod)
        return self._real

    @property
    def module(self):
        real = self._resolved()
        return None if real is None else real.module

    @property
    def version(self):
        from packaging.version import Version

        real = self._resolved()
        return Version("0.0.0") if real is None else real.version

    @property
    def type(self) -> tuple:
        real = self._resolved()
        return () if real is None else real.type

    @property
    def available(self) -> bool:
        real = self._resolved()
        return real is not None and real.available


def import_and_freeze(modules: tuple[str, ...] = STUDY_MODULES) -> None:
    """Import what a study uses, then keep those objects out of garbage collection (:func:`gc.freeze`).

    The libraries' few hundred thousand long-lived objects (modules, functions, classes,
    docstrings) are otherwise scanned by every full collection of the run: measured at 0.6 s of
    a warm example study on 2 cores.  PyTensor's ``traceback__limit`` is set to 0: it records
    the creating stack (for its own error messages) on each of the thousands of variables a
    twin's log density and gradient are built from.  xarray imports dask and pint only if
    something else does (:func:`defer_dask_and_pint`).  For processes twinbayes owns (the
    ``twinbayes`` command, the compile-ahead worker); a library call leaves the caller's
    collector and configuration alone.
    """
    import gc
    from importlib import import_module

    patch_lazy_loader()
    defer_dask_and_pint()
    for name in modules:
        import_module(name)
    from pytensor import config

    config.traceback__limit = 0  # no stack trace on every graph variable (error messages only)
    gc.freeze()
