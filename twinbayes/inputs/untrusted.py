"""Reading and writing files that twinbayes does not trust.

Two kinds of path reach twinbayes from outside:

* **Files the user names** (a spec, a study, patient data, a FHIR bundle).  They may be
  symbolic links (the user chose them), but must end at a regular file: a device
  (``/dev/zero``), a FIFO or a folder is refused before a byte is read, and the size is
  checked on the open file before it is read (:func:`read_file`).
* **Files inside a results folder** (it is mailed, unzipped, shared: anyone may have put
  anything in it).  Every file twinbayes reads or writes there is reached without following a
  symbolic link at any step (a walk of directory descriptors opened with ``O_NOFOLLOW``), must
  be a regular file and is size-capped (:func:`read_in_folder`, :func:`checked_in_folder`);
  files are written under a fresh name (``O_EXCL``) and renamed into place
  (:func:`replace_in_folder`), so a planted link is replaced, never written through.

The opened descriptor is checked (``fstat``), not the name, so a link swapped in between the
check and the read cannot redirect it.  :func:`checked_in_folder` returns a path for libraries
that open files themselves (HDF5): a concurrent local writer could swap a file between the
check and the open; twinbayes' promise covers folders at rest (docs/threat-model.md).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..error import ResultsFolderError

__all__ = [
    "MissingFile",
    "read_file",
    "read_in_folder",
    "checked_in_folder",
    "exists_in_folder",
    "replace_in_folder",
]

_READ = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class MissingFile(ResultsFolderError):
    """A file a results folder should hold is not there."""


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def _read_fd(fd: int, limit: int, where: str, error: Callable[[str], Exception]) -> bytes:
    """The bytes of the open regular file ``fd`` (at most ``limit``), closing it."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise error(f"{where}: {_kind(info.st_mode)}, not a regular file; name a file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise error(
                f"{where}: {info.st_size / 1e6:.1f} MB, more than the {limit / 1e6:g} MB such a "
                "file may hold; check that this is the right file"
            )
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise error(f"{where}: more than {limit / 1e6:g} MB; check that this is the right file")
    return data


def read_file(path: str | Path, limit: int, error: Callable[[str], Exception]) -> bytes:
    """The bytes of a file the user named: a regular file (links followed) of at most ``limit`` bytes.

    Parameters
    ----------
    path : str or Path
    limit : int
        Largest size read, checked on the open file before reading.
    error : callable
        Builds the exception from a message (``PatientDataError``, a ``SpecError`` factory).

    Raises
    ------
    Exception
        ``error(message)``: not found, unreadable, not a regular file (device, FIFO, folder),
        or larger than ``limit``.
    """
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(
            f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})"
        ) from None
    return _read_fd(fd, limit, str(path), error)


def _walk(folder: Path, rel: str) -> tuple[int, str]:
    """A descriptor of the folder holding ``rel`` inside ``folder`` (no link followed) and the last name."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise ResultsFolderError(f"{folder}: {rel!r} is not a name inside the results folder")
    try:
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY)
    except OSError as exc:
        raise ResultsFolderError(
            f"{folder}: cannot open the results folder ({exc.strerror or exc})"
        ) from None
    for part in parts[:-1]:
        try:
            child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise _refused(folder, rel, part, exc) from None
        os.close(fd)
        fd = child
    return fd, parts[-1]


def _refused(folder: Path, rel: str, part: str, exc: OSError) -> Exception:
    if exc.errno == errno.ENOENT:
        return MissingFile(
            f"{folder}: has no {rel} (was it written by another version?): run the study again"
        )
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return ResultsFolderError(
            f"{folder / rel}: {part!r} is a symbolic link or not a folder; a results folder holds "
            "plain files and folders only (was it changed by hand?): run the study again"
        )
    return ResultsFolderError(f"{folder / rel}: cannot be read ({exc.strerror or exc})")


def read_in_folder(folder: str | Path, rel: str, limit: int) -> bytes:
    """The bytes of the regular file ``rel`` inside a results folder, no link followed at any step.

    Raises
    ------
    MissingFile
        If it does not exist.
    ResultsFolderError
        A link, a device, a FIFO or a folder; larger than ``limit``; a name leaving the folder.
    """
    folder = Path(folder)
    fd, name = _walk(folder, rel)
    try:
        leaf = os.open(name, _READ | _NOFOLLOW, dir_fd=fd)
    except OSError as exc:
        raise _refused(folder, rel, name, exc) from None
    finally:
        os.close(fd)
    return _read_fd(leaf, limit, str(folder / rel), ResultsFolderError)


def checked_in_folder(folder: str | Path, rel: str) -> Path:
    """``folder / rel`` after checking that every step is a plain folder and the end a regular file.

    For libraries that open the file themselves (``h5netcdf``); see the module docstring.
    """
    folder = Path(folder)
    fd, name = _walk(folder, rel)
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        raise _refused(folder, rel, name, exc) from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ResultsFolderError(
            f"{folder / rel}: {_kind(info.st_mode)}, not a regular file; a results folder holds "
            "plain files only (was it changed by hand?): run the study again"
        )
    return folder / rel


def exists_in_folder(folder: str | Path, rel: str) -> bool:
    """Whether ``rel`` names a regular file inside the folder (a link there is an error, not a no)."""
    try:
        checked_in_folder(folder, rel)
    except MissingFile:
        return False
    return True


def replace_in_folder(folder: str | Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``folder / name`` under a fresh name, then rename it into place.

    The temporary file is created with ``O_EXCL | O_NOFOLLOW`` (a planted file or link of that
    name is never opened) and the rename replaces whatever entry ``name`` was (a link is
    replaced, not followed).  A failure (a full disk) removes the temporary file.
    """
    folder = Path(folder)
    if Path(name).name != name or name in (".", ".."):
        raise ResultsFolderError(f"{folder}: {name!r} is not a file name")
    fd, tmp = _fresh(folder, name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / name


def _fresh(folder: Path, name: str) -> tuple[int, str]:
    """A new file ``.NAME.tmp-XXXXXXXX`` in ``folder``, opened exclusively for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(folder / f".{name}.tmp-{os.urandom(4).hex()}")
        try:
            return os.open(tmp, flags, 0o644), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no fresh temporary name", str(folder))  # pragma: no cover
