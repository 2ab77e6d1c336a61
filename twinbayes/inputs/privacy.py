"""Privacy by default: a pseudonymous patient key instead of the identifier in every output.

A patient's identifier (the ``subject`` of a CSV, later a FHIR id) may be a
name.  Results, reports, figures, NetCDF attributes and console messages show
``Patient.label``: the pseudonym ``p-`` + the first 12 hex digits of
HMAC-SHA256(key, identifier) (RFC 2104), unless the study opts in to keep
identifiers (``[patient] keep_identifiers = true``).  The key is the
environment variable ``TWINBAYES_PSEUDONYM_KEY`` when set (share it across
machines to get the same pseudonyms), else 32 random bytes created once per
user in ``~/.config/twinbayes/pseudonym.key`` (mode 0600).  Without the key
a pseudonym cannot be traced back to a name by trying candidate names.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

__all__ = ["pseudonym", "key_file", "PSEUDONYM"]

PSEUDONYM = re.compile(r"p-[0-9a-f]{12}")
"""What :func:`pseudonym` returns (a results folder's ``patient.csv`` subject is checked against it)."""


_PROCESS_KEY = secrets.token_bytes(32)


def key_file() -> Path:
    """Where the per-user key lives (``$XDG_CONFIG_HOME/twinbayes`` or ``~/.config/twinbayes``)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "twinbayes" / "pseudonym.key"


def _key() -> bytes:
    env = os.environ.get("TWINBAYES_PSEUDONYM_KEY")
    if env:
        return env.encode()
    path = key_file()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    try:  # atomic: the first process to create the file wins; the others read its key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    except (
        OSError
    ):  # no writable home: a key for this process only (pseudonyms differ between runs)
        return _PROCESS_KEY
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def pseudonym(identifier: str) -> str:
    """``p-`` + 12 hex digits of HMAC-SHA256 of ``identifier`` under the key ("" stays "")."""
    if not identifier:
        return ""
    return "p-" + hmac.new(_key(), identifier.encode(), hashlib.sha256).hexdigest()[:12]
