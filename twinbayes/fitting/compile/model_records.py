"""Records of compiled models: a warm process skips differentiating and linking the log density.

With the machine code (PyTensor's Numba cache, :mod:`twinbayes.fitting.compile.compiled_model`) and the rewritten
graphs (:mod:`twinbayes.fitting.compile.graph_cache`) on disk, a warm process still built every twin's nutpie model
the long way: PyMC's log density, its gradient, the rewritten graph loaded and linked op by op,
only to find the two C callbacks in the cache at the end (0.7-1.5 s per closed-form twin, one core,
before any sampling).  What the callbacks need besides their machine code is small: the number of
unconstrained and traced values, their names, slices and shapes, which shared data each callback
reads, and the two cache keys.  That is a :class:`ModelRecord`, stored as JSON after a compilation
under a :func:`fingerprint` of the model and read by the next process.

The fingerprint is a SHA-256 (:func:`twinbayes.fitting.compile.graph_cache.graph_key`) of the graphs nutpie compiles
from: PyMC's log density and the traced values as functions of the value variables and shared data,
with the names of the value and traced variables, the shapes and dtypes of the shared data, the
model's bounds checking, PyTensor's Numba compile mode, the libraries' versions and the callbacks'
source templates.  Any change there is another record.  A record only says where the machine code
is: the callbacks are loaded from PyTensor's Numba cache or not at all (a miss falls back to the
full compilation), and their source is generated again from the record's integers and names, never
read from the file.  Results are bit-identical either way (``tests/test_model_records.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

from .graph_cache import graph_key, write_atomically

__all__ = ["ModelRecord", "Fingerprint", "fingerprint", "load", "store", "records_dir", "STATS"]

_log = logging.getLogger(__name__)
_FORMAT = "twinbayes-model-record-1"
STATS = {"hits": 0, "misses": 0, "stored": 0}
"""Counts of this process (for tests and benchmarks)."""


@dataclass(frozen=True)
class ModelRecord:
    """What nutpie's compiled model holds besides its machine code (nutpie's names in brackets).

    Attributes
    ----------
    n_dim, n_expanded : int
        Unconstrained values sampled (``_n_dim``) and values traced per draw (``n_expanded``).
    names, slices, shapes : tuple
        Each traced variable's name, ``(start, stop)`` in the traced vector and shape
        (``shape_info``); the first entries are the value variables, in the model's order.
    reparameterized : tuple of str
        Value variables sampled on a transformed scale (``reparameterized_names``).
    logp_shared, expand_shared : tuple of str
        Names of the shared data each callback reads, in the order of its arguments.
    logp_key, expand_key : str
        The callbacks' keys in PyTensor's Numba cache.
    """

    n_dim: int
    n_expanded: int
    names: tuple[str, ...]
    slices: tuple[tuple[int, int], ...]
    shapes: tuple[tuple[int, ...], ...]
    reparameterized: tuple[str, ...]
    logp_shared: tuple[str, ...]
    expand_shared: tuple[str, ...]
    logp_key: str
    expand_key: str

    @property
    def shape_info(self) -> tuple[list[str], list[slice], list[tuple[int, ...]]]:
        """nutpie's ``(names, slices, shapes)``."""
        return list(self.names), [slice(a, b) for a, b in self.slices], list(self.shapes)

    @classmethod
    def from_json(cls, text: str) -> ModelRecord:
        """The record in ``text``; ``ValueError`` for anything but a well-formed record."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            raise ValueError("not a model record of this format")
        names, slices, shapes = raw["names"], raw["slices"], raw["shapes"]
        record = cls(
            n_dim=_count(raw["n_dim"]),
            n_expanded=_count(raw["n_expanded"]),
            names=_texts(names),
            slices=tuple((_count(a), _count(b)) for a, b in slices),
            shapes=tuple(tuple(_count(n) for n in shape) for shape in shapes),
            reparameterized=_texts(raw["reparameterized"]),
            logp_shared=_texts(raw["logp_shared"]),
            expand_shared=_texts(raw["expand_shared"]),
            logp_key=_hex(raw["logp_key"]),
            expand_key=_hex(raw["expand_key"]),
        )
        if not len(record.names) == len(record.slices) == len(record.shapes):
            raise ValueError("names, slices and shapes differ in length")
        return record

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, **asdict(self)})


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a count, got {value!r}")
    return value


def _texts(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"expected a list of names, got {values!r}")
    return tuple(values)


def _hex(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError(f"expected a SHA-256 in hex, got {value!r}")
    return value


class Fingerprint(NamedTuple):
    """A model's record key and its shared data by name (what a record's names refer to)."""

    key: str
    shared: dict[str, Any]


def fingerprint(model, templates: str) -> Fingerprint | None:
    """The key of ``model``'s record (module doc), or ``None`` where it has none.

    ``templates`` is the source the callbacks are generated from.  A model whose shared data
    are not uniquely named has no record (its callbacks' arguments could not be found again).
    """
    from pytensor.compile.mode import get_mode
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.traversal import graph_inputs

    from .graph_cache import mode_text

    expanded = model.unobserved_value_vars
    outputs = [model.logp(), *expanded]
    roots = [v for v in graph_inputs(outputs) if not isinstance(v, Constant)]
    shared = [v for v in roots if isinstance(v, SharedVariable)]
    names = [v.name for v in shared]
    if None in names or len(set(names)) != len(names):
        return None
    data = [v.get_value(borrow=True) for v in shared]
    context = {
        "format": _FORMAT,
        "versions": {p: version(p) for p in ("nutpie", "llvmlite")},
        "mode": mode_text(get_mode("NUMBA")),
        "check_bounds": bool(model.check_bounds),
        "values": [model.rvs_to_values[v].name for v in model.free_RVs],
        "expanded": [v.name for v in expanded],
        "roots": [v.name for v in roots],
        "shared": [[str(getattr(d, "dtype", "")), list(getattr(d, "shape", ()))] for d in data],
        "templates": hashlib.sha256(templates.encode()).hexdigest(),
    }
    try:
        key = graph_key(FunctionGraph(roots, outputs, clone=True), json.dumps(context))
    except Exception as err:  # an Op the key cannot describe: no record
        _log.debug("model record: no key (%s)", err)
        return None
    return Fingerprint(key, dict(zip(names, shared)))


def records_dir() -> Path:
    """Where records are kept: ``<PyTensor compiledir>/twinbayes-models``."""
    from pytensor import config

    return Path(config.compiledir) / "twinbayes-models"


def _path(key: str) -> Path:
    return records_dir() / key[:2] / f"{key}.json"


def load(key: str) -> ModelRecord | None:
    """The record stored under ``key``, or ``None`` (missing or unreadable: a miss, never an error)."""
    try:
        record = ModelRecord.from_json(_path(key).read_text())
    except FileNotFoundError:
        STATS["misses"] += 1
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        _log.debug("model record %s unreadable: %s", key, err)
        STATS["misses"] += 1
        return None
    STATS["hits"] += 1
    return record


def store(key: str, record: ModelRecord) -> None:
    """Write ``record`` under ``key`` atomically; a record that cannot be written is left out
    (the next process compiles the model again)."""
    try:
        write_atomically(_path(key), record.to_json().encode())
    except (OSError, TypeError, ValueError) as err:
        _log.debug("model record %s not stored: %s", key, err)
        return
    STATS["stored"] += 1
