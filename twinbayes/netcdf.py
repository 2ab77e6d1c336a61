"""NetCDF files written as xarray writes them, without asking Dask which scheduler runs.

``Dataset.to_netcdf`` and ``DataTree.to_netcdf`` choose their file lock by asking Dask for the
active scheduler (``xarray.backends.locks.get_dask_scheduler``), which imports Dask and Dask
distributed whenever they are installed, as they are for twinbayes' cohorts: about 1.1 s of
processor time in a study that holds no Dask array (``python -X importtime``; the largest
avoidable import of the bundled example, docs/benchmarks.md).  :func:`write_netcdf` writes
through the same h5netcdf store, encoding and validation as ``to_netcdf(engine="h5netcdf")``,
with xarray's HDF5 lock given, so the files hold the same groups, variables, attributes and
encodings (``tests/test_netcdf.py`` compares them).  Data held as Dask arrays go through
``to_netcdf`` itself, which computes them.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

__all__ = ["write_netcdf"]


def write_netcdf(data: xr.Dataset | xr.DataTree, path: str | Path) -> None:
    """Write ``data`` (a Dataset, or a DataTree with one group per node) to ``path`` as NetCDF-4.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataTree
    path : str or Path
        The file, created or replaced.
    """
    from xarray.backends import H5NetCDFStore
    from xarray.backends.locks import HDF5_LOCK
    from xarray.backends.writers import _validate_attrs, _validate_dataset_names

    tree = data if isinstance(data, xr.DataTree) else None
    groups = (
        [(n, n.to_dataset(inherit=n is tree)) for n in tree.subtree] if tree else [(None, data)]
    )
    if any(v.chunks is not None for _, ds in groups for v in ds.variables.values()):
        data.to_netcdf(path, engine="h5netcdf")
        return
    for _, ds in groups:
        _validate_dataset_names(ds)
        _validate_attrs(ds, "h5netcdf")
    store = H5NetCDFStore.open(str(path), mode="w", lock=HDF5_LOCK)
    try:
        for node, ds in groups:
            target = store if node is None or node is tree else store.get_child_store(node.path)
            ds.dump_to_store(target)
    finally:
        store.close()
