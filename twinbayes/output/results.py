"""Results folders: every fit as NetCDF, a summary and provenance, written atomically.

A run writes into a hidden temporary folder beside the target and renames it
into place only when everything is written, so an interrupted run never
leaves a folder that looks complete; an existing folder is replaced only when
asked (``force=True``), and then only after the new one is complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from ..error import TwinbayesError
from ..fitting.misfit import predictive_checks
from ..inputs.library import package_dir
from ..inputs.names import check_name, inside
from .netcdf import write_netcdf

__all__ = ["ResultsFolder", "OutputError", "load_twin_data"]

PACKAGES = (
    "twinbayes",
    "pymc",
    "pytensor",
    "nutpie",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "numpy",
    "scipy",
    "xarray",
)


log = logging.getLogger(__name__)


class OutputError(TwinbayesError, RuntimeError):
    """The results cannot be written (read-only folder, full disk, ...); nothing was replaced."""


MARKER = ".twinbayes-results"
"""The file that marks a folder as written by twinbayes (the only kind ``--force`` replaces)."""


@dataclass
class ResultsFolder:
    path: Path
    staging: Path
    force: bool
    study_info: dict | None = None
    written: dict = field(default_factory=dict, repr=False)
    """NetCDF files written so far (name relative to the folder -> the DataTree written), for
    the report (:func:`~twinbayes.output.report.write_report`) to use without reading them back."""
    seen: tuple[int, int, str] | None = None
    """Device, inode and marker digest of the folder at :attr:`path` when the run started
    (``None``: none was there): the only folder :meth:`commit` may replace."""
    lock: Lock | None = field(default=None, repr=False)
    _writes: list[Future] = field(default_factory=list, repr=False)
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def create(cls, path: Path, force: bool = False) -> ResultsFolder:
        """Start a results folder at ``path`` (moved into place by :meth:`commit`).

        The run holds a lock on ``path`` until :meth:`commit` or :meth:`abort` (a second run on
        the same folder is refused at once), removes the partial folders that killed runs left
        beside it, and remembers which folder (device, inode, marker) ``--force`` may replace.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``force`` is false, or is not a folder twinbayes wrote.
        OutputError
            If the folder cannot be written, or another run is writing it.
        """
        path = Path(path)
        try:  # before any fit: a folder that cannot be written is found in a second, not after hours
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _lock(path)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        try:
            seen = _replaceable(path, force)
            _remove_stale(path)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        except OSError as exc:
            _unlock(lock)
            raise _unwritable(path, exc) from exc
        except BaseException:
            _unlock(lock)
            raise
        folder = cls(path, staging, force, seen=seen, lock=lock)
        try:
            (staging / "twins").mkdir()
            (staging / MARKER).write_text(
                "written by twinbayes; --force may replace this folder\n"
                f"run {secrets.token_hex(16)}\n"  # tells this folder from a copy of its marker
            )
        except OSError as exc:
            folder.abort()
            raise _unwritable(path, exc) from exc
        return folder

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a failed write (full disk, folder made read-only) into an :class:`OutputError`.

        The caller aborts the run; the partial folder is removed and an existing folder at
        :attr:`path` stays as it was.
        """
        try:
            yield
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise OutputError(
                f"writing the results failed: {exc.strerror or exc}{where}{self._space(exc)}. "
                f"Nothing was replaced: {self.path} is as it was and the partial results were "
                "removed. Free some space or choose another --out, then run again"
            ) from exc

    def _space(self, exc: OSError) -> str:
        """For a full disk: what the results held when it filled, and what is free."""
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return ""
        held = sum(f.stat().st_size for f in self.staging.rglob("*") if f.is_file())
        free = shutil.disk_usage(self.staging).free
        return (
            f"; {free / 1e6:.1f} MB free in {self.path.parent}, and the results need more than "
            f"the {held / 1e6:.2f} MB written when the disk filled"
        )

    def abort(self) -> None:
        """Remove the partial folder after a failure (once no write is in flight)."""
        try:
            self.finish_writes()
        except Exception:  # the failure being handled is the caller's; this one adds nothing
            pass
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self.lock is not None:
            _unlock(self.lock)
            self.lock = None

    def write_twin(self, twin, background: bool = False) -> Path:
        """Write a twin's DataTree (posterior, log-likelihood, predictive, ...) as NetCDF.

        With ``background``, the file is written in a thread (while the next twin samples in
        nutpie's own threads); :meth:`finish_writes` waits for it and raises its error.
        """
        target = inside(self.staging, "twins", f"{check_name(twin.name, 'model.name')}.nc")
        tree = twin.idata.copy()
        tree.attrs["warnings"] = json.dumps(twin.warnings)
        stats = tree["sample_stats"].to_dataset()
        drop = [
            v for v in stats.data_vars if stats[v].dtype == object
        ]  # free-text messages do not fit NetCDF
        tree["sample_stats"] = stats.drop_vars(drop)
        self.written[f"twins/{target.name}"] = tree
        if background:
            for w in self._writes:  # an earlier twin's failed write ends the run now, not later
                if w.done() and w.exception() is not None:
                    self.finish_writes()
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="twinbayes-write")
            self._writes.append(self._writer.submit(write_netcdf, tree, target))
        else:
            write_netcdf(tree, target)
        return target

    def finish_writes(self) -> None:
        """Wait for the background writes; raise the first one's error (``OSError`` for a full disk)."""
        writes, self._writes = self._writes, []
        try:
            for w in writes:
                w.result()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def write_comparison(self, comparison) -> Path:
        """Write the comparison table, pointwise and pairwise results as one NetCDF file."""
        import xarray as xr

        target = self.staging / "comparison.nc"
        tree = xr.DataTree.from_dict(
            {
                "table": comparison.table,
                "pointwise": comparison.pointwise,
                "pairwise": comparison.pairwise,
                **(
                    {"weight_draws": comparison.weight_draws}
                    if comparison.weight_draws is not None
                    else {}
                ),
            }
        )
        tree.attrs["notes"] = json.dumps(comparison.notes)
        write_netcdf(tree, target)
        self.written[target.name] = tree
        (self.staging / "comparison.txt").write_text(str(comparison) + "\n")
        return target

    def write_disagreement(self, result) -> Path:
        """Write the disagreement between twins (NetCDF) and its tables (text)."""
        import xarray as xr

        target = self.staging / "disagreement.nc"
        write_netcdf(result.data, target)
        self.written[target.name] = xr.DataTree(result.data)
        (self.staging / "disagreement.txt").write_text(str(result) + "\n")
        return target

    def write_study(self, study) -> None:
        """Copy the study file and every spec it used, for reproducibility.

        Scenarios read from the bundle's MedicationRequests are appended to the copy as
        ``[[scenarios]]``, so an update of the folder simulates them without the bundle.
        """
        text = study.text if study.keep_identifiers else _redacted(study.text)
        (self.staging / "study.toml").write_text(text + _requested_scenarios(study))
        self.study_info = {
            "name": study.name,
            "source": Path(str(study.source)).name,  # the file name: no user's folders in outputs
            "sha256": study.sha256,
            "seed": study.seed,
        }
        specs = self.staging / "specs"
        specs.mkdir(exist_ok=True)
        for p in study.specs:
            inside(specs, Path(p).name).write_text(Path(p).read_text())

    def write_patient(self, patient) -> Path:
        """The patient's data so far as tidy CSV (``patient.csv``; subject: :attr:`Patient.label`),
        so that :func:`~twinbayes.run.updates.update_results` can add to it."""
        return patient.write_csv(self.staging / "patient.csv")

    def write_history(self, entries: list[dict]) -> Path:
        """``history.json``: one entry per run of this folder (see :func:`~twinbayes.output.history.history_entry`)."""
        target = self.staging / "history.json"
        _write_json(target, entries)
        return target

    def figure_path(self, name: str) -> Path:
        """Where to save a figure (``figures/NAME.png``)."""
        folder = self.staging / "figures"
        folder.mkdir(exist_ok=True)
        return inside(folder, f"{name}.png")

    def write_metadata(self, twins, command: list[str], outcome: dict | None = None) -> None:
        """Write ``summary.json`` (gate verdicts, diagnostics, the run's outcome) and ``provenance.json``."""
        summary = {t.name: _twin_summary(t) for t in twins}
        keep = bool(twins and twins[0].patient.data.attrs.get("keep_identifiers"))
        provenance = {
            "created": datetime.now(UTC).isoformat(),
            "study": self.study_info,
            "command": outputs_command(command, keep),
            "python": sys.version,
            "platform": platform.platform(),
            "packages": {p: _version(p) for p in PACKAGES},
            "lock": lock_files(),
            "patient": {
                "id": twins[0].patient.label,
                "source": Path(str(twins[0].patient.data.attrs.get("source"))).name
                if keep
                else WITHHELD,
                "sha256": twins[0].patient.sha256,
            }
            if twins
            else None,
            "twins": {
                t.name: {
                    "spec": Path(
                        t.spec.source
                    ).name,  # the file name only: no user paths in outputs
                    "spec_sha256": t.spec.sha256,
                    "settings": getattr(t, "settings", None),
                    "timings_s": getattr(t, "timings", None),
                }
                for t in twins
            },
        }
        if outcome is not None:
            summary = {"outcome": outcome, "twins": summary}
        _write_json(self.staging / "summary.json", summary)
        _write_json(self.staging / "provenance.json", provenance)

    def commit(self) -> Path:
        """Move the complete folder into place, replacing only the folder seen at the start.

        Whatever is at :attr:`path` now is checked again: a folder that appeared during the run,
        or one that is not the folder seen at the start (another device or inode, no marker), is
        never touched; the new results are then moved to a visible sibling folder and
        :class:`OutputError` says where.  The old folder is renamed aside, the new one
        renamed in, and only then the old one (the one seen at the start) removed.
        """
        self.finish_writes()
        try:
            now = _identity(self.path)
            if now is None:
                os.replace(self.staging, self.path)
            elif now == self.seen and self.force and _marked(self.path):
                old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
                os.replace(self.path, old / "results")
                try:
                    os.replace(self.staging, self.path)
                except OSError:
                    os.replace(old / "results", self.path)  # the old folder back where it was
                    raise
                shutil.rmtree(old)
            else:
                kept = _sibling(self.path)
                os.replace(self.staging, kept)
                raise OutputError(
                    f"{self.path} {'appeared' if self.seen is None else 'was replaced by something else'} "
                    f"during the run and was left as it is; the new results are in {kept}"
                )
        finally:
            self._release()
        return self.path


def _identity(path: Path) -> tuple[int, int, str] | None:
    """Device and inode of ``path`` itself (a link is not followed) and the digest of its
    marker, whose every copy holds a run's own random token (an inode number is reused as
    soon as a folder is deleted, a token is not); ``None`` if nothing is there."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    try:
        marker = (path / MARKER).read_bytes() if _marked(path) else b""
    except OSError:
        marker = b""
    return (info.st_dev, info.st_ino, hashlib.sha256(marker).hexdigest())


def _marked(path: Path) -> bool:
    """A real folder (not a link) holding twinbayes' marker as a regular file."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode) and stat.S_ISREG((path / MARKER).lstat().st_mode)
    except OSError:
        return False


def _replaceable(path: Path, force: bool) -> tuple[int, int, str] | None:
    """The identity of what is at ``path`` if the run may replace it at the end (else refuse)."""
    seen = _identity(path)
    if seen is None:
        return None
    if not force:
        raise FileExistsError(
            f"results folder {path} exists; choose another --out or pass --force to replace it"
        )
    if not _marked(path):
        raise FileExistsError(
            f"{path} is not a twinbayes results folder (it has no {MARKER} file): --force replaces "
            "only folders twinbayes wrote; choose another --out"
        )
    return seen


def _sibling(path: Path) -> Path:
    """A new visible folder beside ``path`` for results that could not go to ``path``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        kept = path.with_name(f"{path.name}-{stamp}" + (f"-{i}" if i else ""))
        if _identity(kept) is None:
            return kept
    raise FileExistsError(errno.EEXIST, "no free name beside the results folder", str(path))


class Lock(NamedTuple):
    """An exclusive ``flock`` held on the file ``.NAME.lock`` beside a results folder."""

    fd: int
    path: Path


def _lock(path: Path) -> Lock:
    """Hold an exclusive lock on ``path`` (the file ``.NAME.lock`` beside it); refuse if held."""
    import fcntl

    lockfile = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"another twinbayes run is writing {path} (it holds {lockfile}); wait for it to "
                "finish or choose another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.lstat(lockfile).st_ino
        except FileNotFoundError:  # its holder removed it between our open and our lock
            same = False
        if same:
            return Lock(fd, lockfile)
        os.close(fd)


def _unlock(lock: Lock) -> None:
    """Release a lock from :func:`_lock` (its file is removed while still held, so that a run
    waiting on the old file sees that it is gone and takes a new one)."""
    try:
        lock.path.unlink()
    except OSError:
        pass
    os.close(lock.fd)


def _remove_stale(path: Path) -> None:
    """Remove the ``.NAME.partial-*`` and ``.NAME.old-*`` folders of runs that were killed.

    Called with the lock held, so no living run owns them: they hold a killed run's partial
    results (patient data).  Only real folders holding twinbayes' marker (or empty ones) go.
    """
    for pattern in (f".{path.name}.partial-*", f".{path.name}.old-*"):
        for stale in path.parent.glob(pattern):
            if stale.is_symlink() or not stale.is_dir():
                continue
            if _marked(stale) or _marked(stale / "results") or not any(stale.iterdir()):
                shutil.rmtree(stale, ignore_errors=True)
                log.info("removed %s, left by an interrupted run", stale)


def _unwritable(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write results into {path.parent}: {exc.strerror or exc}; "
        "choose another --out, in a folder you can write to"
    )


def _requested_scenarios(study) -> str:
    """``[[scenarios]]`` TOML of the study's scenarios from MedicationRequests ("" without)."""
    if not getattr(study, "requested", None):
        return ""
    import tomli_w

    tables = []
    for sc in study.requested:
        first = sc.doses[0]
        table = {"name": sc.name, "route": first.route, "amount": first.amount, "unit": first.unit}
        if len(sc.doses) > 1:
            table |= {"interval": sc.doses[1].time - first.time, "doses": len(sc.doses)}
        if first.duration:
            table["duration"] = first.duration
        tables.append(table)
    return (
        "\n\n# Scenarios read from the bundle's MedicationRequest dosages when the study ran\n"
        + tomli_w.dumps({"scenarios": tables})
    )


WITHHELD = "(withheld: identifiers are kept only with [patient] keep_identifiers = true)"
"""What outputs show instead of a patient's identifier or data file name."""


def _redacted(study_text: str) -> str:
    """The study text with the patient's ``subject`` withheld and its data file named
    ``patient.csv`` (the folder's own copy), unless bundled (privacy by default: a data file's
    name is often a patient's name or record number)."""
    import re

    text = re.sub(r'(?m)^(\s*subject\s*=\s*)(".*?"|\'.*?\'|\S+)', rf'\1"{WITHHELD}"', study_text)
    return re.sub(
        r'(?m)^(\s*data\s*=\s*)(?!["\']bundled:)(".*?"|\'.*?\'|\S+)',
        r'\1"patient.csv"  # the data file name is withheld; patient.csv of this folder holds the data',
        text,
    )


VALUE_OPTIONS = ("--seed", "--draws", "--tune", "--chains", "--sims", "--ranks")
"""Command-line options whose values are numbers, recorded as given."""


def outputs_command(command: list[str], keep: bool = False) -> list[str]:
    """The command line as outputs record it: the program, the subcommand, the options and
    their numbers; every path replaced by ``<path>`` and a ``--subject`` by ``<subject>``,
    unless identifiers are kept (paths name the user's folders and often the patient)."""
    command = [str(c) for c in command]
    if keep:
        return command
    out, previous = command[:2], ""
    for arg in command[2:]:
        if arg.startswith("-") and "=" in arg:  # --out=PATH
            option, value = arg.split("=", 1)
            out.append(f"{option}={_recorded(option, value)}")
        else:
            out.append(arg if arg.startswith("-") else _recorded(previous, arg))
        previous = arg
    return out


def _recorded(option: str, value: str) -> str:
    """The value of ``option`` (or a positional argument) as outputs record it."""
    if option in VALUE_OPTIONS:
        return value
    return "<subject>" if option == "--subject" else "<path>"


def _twin_summary(t) -> dict:
    """Gate verdict, reasons, diagnostics and escalation attempts of one twin (or why its fit failed)."""
    if not hasattr(t, "diagnostics"):  # a FailedFit
        return {"converged": False, "failed": True, "reasons": t.reasons, "gate_attempts": []}
    return {
        "converged": t.converged,
        "reasons": t.reasons,
        "excluded_observations": [list(e) for e in t.excluded],
        "diagnostics": {
            p: {
                k: float(t.diagnostics.table[k].sel(parameter=p))
                for k in ("rhat", "ess_bulk", "ess_tail")
            }
            for p in t.diagnostics.table.parameter.values.tolist()
        },
        "divergent": t.diagnostics.divergent,
        "gate_attempts": [a.as_dict() for a in t.attempts],
        "prior_sensitivity": t.sensitivity.as_dict() if getattr(t, "sensitivity", None) else {},
        "warnings": t.warnings,
        "predictive_checks": [c.as_dict() for c in predictive_checks(t)],
    }


def lock_files() -> dict[str, str]:
    """SHA-256 of the lock files next to the package (a source checkout); empty for an installed wheel."""
    folder = package_dir().parent / "requirements"
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.lock"))
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def load_twin_data(path: str | Path):
    """Open a twin's NetCDF file from a results folder as an ``xarray.DataTree``."""
    import xarray as xr

    return xr.open_datatree(path, engine="h5netcdf")
