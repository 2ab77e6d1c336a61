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
        "from twinbayes.fitting.compile.import_speed import patch_lazy_loader\n"
        "patch_lazy_loader()  # as the twinbayes command does\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('inspect.stack was called')\n"
        "inspect.stack = refuse\n"
        "import arviz_base, nutpie\n"
        "print('ok')\n"
    )
    assert _run(code).strip() == "ok"


def test_a_missing_module_fails_on_first_use_as_without_the_workaround():
    plain = _run(PROBE.format(setup=""))
    patched = _run(
        PROBE.format(
            setup="from twinbayes.fitting.compile.import_speed import patch_lazy_loader; patch_lazy_loader()"
        )
    )
    assert "No module named 'no_such_module_twinbayes'" in plain
    assert "line 5" in plain and 'mod = lazy_loader.load("no_such' in plain  # the caller's line
    assert patched == plain


DUCKS = """
import sys
{setup}
import numpy as np, xarray as xr
from twinbayes.output.netcdf import write_netcdf
ds = xr.Dataset({{"a": ("x", np.arange(3.0))}}, coords={{"x": [1, 2, 3]}})
write_netcdf(ds.sel(x=[1, 3]), sys.argv[1])
back = xr.open_dataset(sys.argv[1], engine="h5netcdf").load()
print("imported:", "dask" in sys.modules, "pint" in sys.modules, float(back.a.sum()))
import dask.array as da, pint
from xarray.namedarray.pycompat import array_type, is_chunked_array
chunked = ds.chunk({{"x": 1}})
print(array_type("dask"), is_chunked_array(chunked.a.data), chunked.chunks, float(chunked.a.sum()))
q = pint.UnitRegistry().Quantity(np.arange(3.0), "m")
print(array_type("pint"), xr.DataArray(q).to_numpy().tolist())
"""


def test_xarray_imports_dask_and_pint_only_once_something_else_has(tmp_path):
    """In a study process (``import_and_freeze``) indexing and writing NetCDF import neither
    package, and once imported, dask arrays and pint quantities are recognised as without it."""
    plain = subprocess.run(
        [sys.executable, "-c", DUCKS.format(setup=""), str(tmp_path / "a.nc")],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    setup = (
        "from twinbayes.fitting.compile.import_speed import import_and_freeze\nimport_and_freeze()"
    )
    deferred = subprocess.run(
        [sys.executable, "-c", DUCKS.format(setup=setup), str(tmp_path / "b.nc")],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert deferred[0] == "imported: False False 2.0"
    assert plain[0] == "imported: True True 2.0"  # what the workaround saves
    assert deferred[1:] == plain[1:]
    assert "dask.array.core.Array" in deferred[1] and "True" in deferred[1]
    assert deferred[2].endswith("[0.0, 1.0, 2.0]") and "Quantity" in deferred[2]


def test_importing_twinbayes_leaves_lazy_loader_alone():
    """Issue 37: ``import twinbayes`` (and its study machinery) patches nothing process-wide; the
    workaround is the ``twinbayes`` command's own (its process, :func:`import_and_freeze`)."""
    code = (
        "import lazy_loader\n"
        "original = lazy_loader.load\n"
        "import twinbayes, twinbayes.run.pipeline, twinbayes.fitting.twin, arviz_base\n"
        "print(lazy_loader.load is original, lazy_loader.load.__module__)\n"
        "from twinbayes.fitting.compile.import_speed import patch_lazy_loader\n"
        "patch_lazy_loader()\n"
        "print(lazy_loader.load is original)\n"
    )
    assert _run(code).split() == ["True", "lazy_loader", "False"]


def test_a_fit_leaves_the_process_fast_math_setting_as_it_was():
    """Issue 37: IEEE numerics (no fast-math) hold inside twinbayes' compilations only
    (:func:`~twinbayes.model.twin_model.ieee_numerics`); a fit leaves PyTensor's process-wide
    setting as the user had it, whichever it was, and that setting changes no draw."""
    code = (
        "import hashlib, pytensor, twinbayes as tb\n"
        "patient = tb.Patient.from_csv('bundled:theophylline.csv', subject=1)\n"
        "for setting in (True, False):\n"
        "    pytensor.config.numba__fastmath = setting\n"
        "    twin = tb.fit(tb.load_spec('pk_1cmt_oral'), patient, seed=1, draws=100, tune=100,\n"
        "                  progress=False)\n"
        "    draws = twin.idata['posterior']['CL'].values.tobytes()\n"
        "    print(pytensor.config.numba__fastmath is setting, hashlib.sha256(draws).hexdigest())\n"
    )
    (a, digest_a), (b, digest_b) = (line.split() for line in _run(code).splitlines())
    assert a == b == "True"
    assert digest_a == digest_b
