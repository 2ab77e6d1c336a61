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

The file is built in memory and written with one plain write: HDF5 that meets a full disk
half-way through a file can crash the process (a segmentation fault in ``H5Gunlink`` seen with
h5py 3.16 on a full tmpfs), while a plain write fails with ``OSError(ENOSPC)``, which the results
folder turns into a clear error (``tests/test_faults.py``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import xarray as xr

__all__ = ["netcdf_bytes", "write_netcdf"]


def write_netcdf(data: xr.Dataset | xr.DataTree, path: str | Path) -> None:
    """Write ``data`` (a Dataset, or a DataTree with one group per node) to ``path`` as NetCDF-4.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataTree
    path : str or Path
        The file, created (it must not be a symbolic link) or truncated.
    """
    image = netcdf_bytes(data)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        with os.fdopen(os.open(path, flags, 0o644), "wb") as f:
            f.write(image)
    except OSError as exc:  # say how large the file is (a full disk: the space it needed)
        raise OSError(
            exc.errno, f"{exc.strerror} (a file of {len(image) / 1e6:.1f} MB)", str(path)
        ) from exc


def netcdf_bytes(data: xr.Dataset | xr.DataTree) -> bytes:
    """The NetCDF-4 file of ``data`` as bytes (see :func:`write_netcdf`)."""
    from xarray.backends import H5NetCDFStore
    from xarray.backends.locks import HDF5_LOCK
    from xarray.backends.writers import _validate_attrs, _validate_dataset_names

    tree = data if isinstance(data, xr.DataTree) else None
    groups = (
        [(n, n.to_dataset(inherit=n is tree)) for n in tree.subtree] if tree else [(None, data)]
    )
    buffer = io.BytesIO()
    if any(v.chunks is not None for _, ds in groups for v in ds.variables.values()):
        data.to_netcdf(buffer, engine="h5netcdf")
        return buffer.getvalue()
    for _, ds in groups:
        _validate_dataset_names(ds)
        _validate_attrs(ds, "h5netcdf")
    store = H5NetCDFStore.open(buffer, mode="w", lock=HDF5_LOCK)
    try:
        for node, ds in groups:
            target = store if node is None or node is tree else store.get_child_store(node.path)
            ds.dump_to_store(target)
    finally:
        store.close()
    return buffer.getvalue()
