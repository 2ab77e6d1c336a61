"""NetCDF files written without xarray's Dask scheduler lookup hold what ``to_netcdf`` writes."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from twinbayes.output.netcdf import write_netcdf


def _tree() -> xr.DataTree:
    """Groups, coordinates, dtypes and attributes of the kinds a results folder holds."""
    rng = np.random.default_rng(3)
    posterior = xr.Dataset(
        {
            "CL": (("chain", "draw"), rng.normal(size=(2, 5))),
            "conc": (("chain", "draw", "obs"), rng.normal(size=(2, 5, 3)).astype(np.float32)),
            "diverging": (("chain", "draw"), rng.random((2, 5)) < 0.2),
            "tree_depth": (("chain", "draw"), rng.integers(1, 6, (2, 5))),
        },
        coords={"chain": [0, 1], "draw": np.arange(5), "obs": [0.25, 1.0, 24.0]},
        attrs={"seed": 7, "sampler": "nutpie", "target_accept": 0.95, "gate": [1.01, 400.0]},
    )
    table = xr.Dataset(
        {"elpd": ("twin", [-14.8, -15.2]), "note": ("twin", ["psis-loo", "refits; obs 2: MCSE"])},
        coords={"twin": ["pk_2cmt_oral", "pk_1cmt_oral"]},
    )
    tree = xr.DataTree.from_dict(
        {"posterior": posterior, "table": table, "a/b": table.isel(twin=[0])}
    )
    tree.attrs["notes"] = '{"weights": "stacking"}'
    return tree


def _h5_contents(path) -> dict:
    """Every group and dataset of an HDF5 file: kind, dtype, shape, values and attributes.

    Dimension-scale references are object references (addresses in the file), compared by
    which datasets they point to.
    """
    out = {}
    with h5py.File(path, "r") as f:

        def attrs(obj) -> dict:
            got = {}
            for k, v in obj.attrs.items():
                if k in ("DIMENSION_LIST", "REFERENCE_LIST"):
                    got[k] = repr(
                        [
                            [f[r].name for r in np.atleast_1d(row) if isinstance(r, h5py.Reference)]
                            for row in np.atleast_1d(v)
                        ]
                        if k == "DIMENSION_LIST"
                        else [f[row[0]].name for row in v]
                    )
                else:
                    got[k] = repr(np.asarray(v).tolist())
            return got

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (
                    "dataset",
                    str(obj.dtype),
                    obj.shape,
                    repr(obj[()].tolist()),
                    attrs(obj),
                )
            else:
                out[name] = ("group", attrs(obj))

        out["/"] = ("group", attrs(f))
        f.visititems(visit)
    return out


@pytest.mark.parametrize("what", ["tree", "dataset"])
def test_files_hold_what_to_netcdf_writes(tmp_path, what):
    data = _tree() if what == "tree" else _tree()["posterior"].to_dataset()
    ours, theirs = tmp_path / "ours.nc", tmp_path / "theirs.nc"
    write_netcdf(data, ours)
    data.to_netcdf(theirs, engine="h5netcdf")
    assert _h5_contents(ours) == _h5_contents(theirs)
    opened = xr.open_datatree(ours, engine="h5netcdf")
    xr.testing.assert_identical(opened, xr.open_datatree(theirs, engine="h5netcdf"))
    expected = data if what == "tree" else xr.DataTree(data)
    xr.testing.assert_identical(opened.load(), expected)


def test_invalid_names_and_attributes_are_refused_as_by_to_netcdf(tmp_path):
    bad = xr.Dataset({"x": ("t", [1.0])}, attrs={"meta": {"nested": 1}})
    with pytest.raises(TypeError, match="Invalid value for attr 'meta'"):
        write_netcdf(bad, tmp_path / "bad.nc")
    with pytest.raises(ValueError, match="Forward slashes"):
        write_netcdf(xr.Dataset({"a/b": ("t", [1.0])}), tmp_path / "bad2.nc")


def test_writing_does_not_import_dask_distributed(tmp_path):
    """``to_netcdf`` imports Dask distributed to pick its lock (shown first); these files do not."""
    code = (
        "import sys, xarray as xr, numpy as np\n"
        "from twinbayes.output.netcdf import write_netcdf\n"
        "ds = xr.Dataset({'x': ('t', np.arange(3.0))})\n"
        f"write_netcdf(ds, {str(tmp_path / 'x.nc')!r})\n"
        "print('distributed' in sys.modules)\n"
        f"ds.to_netcdf({str(tmp_path / 'y.nc')!r}, engine='h5netcdf')\n"
        "print('distributed' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "True"]
