"""nutpie models whose machine code is cached across processes.

``nutpie.compile_pymc_model`` turns a PyMC model into two C callbacks (the log density with
its gradient, and the expansion of a draw into every traced variable) by wrapping PyTensor's
Numba functions in ``numba.cfunc`` closures.  PyTensor caches its own Numba functions on disk,
but the closures cannot be cached, so every process pays 2-4 s of LLVM compilation per twin
for two wrappers a few lines long (measured in ``benchmarks/bench_study.py``).

:func:`compile_model` builds the same callbacks from generated *source* that refers to the
PyTensor functions as globals, and registers it with PyTensor's Numba cache locator under a key
made of PyTensor's own graph key and the wrapper source.  A second process with the same graph
loads the machine code instead of compiling it.  The code is the same either way, so results
are bit-identical with and without the cache (checked by ``benchmarks/bench_study.py``, which
compares cold and warm runs, and by ``tests/test_compile_once.py``).

Where PyTensor gives a graph no cache key (an Op without one), nutpie's own compilation is used.

This relies on nutpie's model-building helpers (``_make_functions``, ``make_user_data``,
``CompiledPyMCModel``), pinned with nutpie in ``requirements/*.lock``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.core.ccallback import CFunc
from numba.extending import intrinsic

from ...model.twin_model import ieee_numerics
from . import model_records
from .graph_cache import rewrites_cached
from .model_records import ModelRecord
from .speed import private_speedups

_LOGP_SRC = """
def logp_cfunc(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
        logp = carray(logp_, ())
{shared}
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def expand_cfunc(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
{shared}
        (values,) = inner(x{args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _shared_lines(
    keys: list[str], all_keys: list[str], shapes: dict[str, tuple]
) -> tuple[str, str]:
    """Source lines reading each shared array from nutpie's user-data record, and the call arguments.

    The record (``nutpie.compile_pymc.make_user_data``) starts with one ``uintp`` data pointer per
    shared variable, in ``all_keys`` order; shapes are fixed when the model is compiled.
    """
    lines = (
        [f"        ptrs = carray(as_uint64_ptr(user_data_), ({len(all_keys)},))"] if keys else []
    )
    args = []
    for j, key in enumerate(keys):
        i = all_keys.index(key)
        lines.append(f"        s{j} = carray(as_double_ptr(ptrs[{i}]), {tuple(shapes[key])!r})")
        args.append(f", s{j}")
    return "\n".join(lines), "".join(args)


@intrinsic
def as_uint64_ptr(typingctx, src):
    """``(uint64 *) src`` for a ``void *``: the start of nutpie's user-data record."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))

    return types.CPointer(types.uint64)(src), codegen


@intrinsic
def as_double_ptr(typingctx, src):
    """``(double *) src`` for an address held as an integer: one shared array's data."""

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return types.CPointer(types.float64)(src), codegen


class _CacheMiss(Exception):
    """The callback is not in PyTensor's Numba cache."""


class _LoadOnlyCFunc(CFunc):
    """A ``numba.cfunc`` taken from the cache or not at all (nothing is compiled)."""

    def _compile_uncached(self):
        raise _CacheMiss


def _callback_env(inner) -> dict[str, Any]:
    return {
        "__name__": __name__,  # numba rebuilds a cached function's environment from this module
        "inner": inner,
        "carray": numba.carray,
        "np": np,
        "as_uint64_ptr": as_uint64_ptr,
        "as_double_ptr": as_double_ptr,
    }


def _cached_cfunc(src: str, name: str, inner, signature) -> tuple[Any, str] | None:
    """``numba.cfunc(signature, cache=True)`` of generated ``src``, keyed by PyTensor's graph key,
    and the key.

    Returns ``None`` when PyTensor has no cache key for ``inner`` (the caller falls back).
    """
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    graph_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    if graph_key is None:
        return None
    # the module's name is in the key: numba rebuilds a cached function's environment by
    # importing it, so an entry written under another name (before a module moved) is never read
    key = hashlib.sha256(f"twinbayes-cfunc-1\n{__name__}\n{graph_key}\n{src}".encode()).hexdigest()
    fn = compile_numba_function_src(src, name, global_env=_callback_env(inner), cache_key=key)
    with warnings.catch_warnings():  # an uncacheable wrapper still works, compiled as nutpie would
        warnings.filterwarnings("ignore", "Cannot cache", numba.NumbaWarning)
        return numba.cfunc(signature, cache=True)(fn), key


def _load_cfunc(src: str, name: str, key: str, signature) -> Any | None:
    """The callback of ``src`` stored under ``key`` by :func:`_cached_cfunc`, or ``None``.

    Nothing is typed or compiled, so the PyTensor function the source calls (``inner``) is not
    needed: the cached machine code has it linked in.
    """
    from numba.core import sigutils
    from pytensor.link.numba.cache import compile_numba_function_src

    fn = compile_numba_function_src(src, name, global_env=_callback_env(None), cache_key=key)
    cfunc = _LoadOnlyCFunc(fn, sigutils.normalize_signature(signature), locals={}, options={})
    cfunc.enable_caching()
    try:
        cfunc.compile()
    except (_CacheMiss, ImportError, AttributeError):  # not stored, or stored by a moved module
        return None
    return cfunc


def _signatures():
    import numba.types as nt

    logp = nt.int64(
        nt.uint64,
        nt.CPointer(nt.double),
        nt.CPointer(nt.double),
        nt.CPointer(nt.double),
        nt.voidptr,
    )
    expand = nt.int64(
        nt.uint64, nt.uint64, nt.CPointer(nt.double), nt.CPointer(nt.double), nt.voidptr
    )
    return logp, expand


_SIGNATURES = _signatures()
"""The C signatures of the log density with gradient and of the expansion (nutpie's)."""


def compile_model(model, *, from_records: bool = True) -> Any:
    """nutpie's compiled model of ``model``, its two C callbacks cached on disk.

    Parameters
    ----------
    model : pymc.Model
        A model whose shared data (``pm.Data``) are float64 arrays; ``with_data`` may change their
        values, not their shapes.
    from_records : bool
        Build the model from its record (:mod:`twinbayes.fitting.compile.model_records`) where one and its machine
        code are stored, skipping the gradient and the linking; ``False`` always compiles (the
        callbacks may still come from the cache).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        The same object ``nutpie.compile_pymc_model(model)`` returns, sampling the same draws;
        one built from a record has no PyTensor functions (``logp_func``, ``expand_func`` are
        ``None``: nutpie samples through the callbacks).  With the private speed-ups off
        (:mod:`twinbayes.fitting.compile.speed`), ``nutpie.compile_pymc_model``'s own, the same draws.
    """
    with ieee_numerics():  # scoped: the process's own fast-math setting is left as it was
        return _compiled(model, from_records)


def _compiled(model, from_records: bool) -> Any:
    """:func:`compile_model` under IEEE numerics."""
    if (
        not private_speedups()
    ):  # the public path (twinbayes.fitting.compile.speed): nutpie's own compilation
        return _nutpie_compiled(model)
    initial = _initial_point(model)
    found = model_records.fingerprint(model, _LOGP_SRC + _EXPAND_SRC) if from_records else None
    if found is not None and (record := model_records.load(found.key)) is not None:
        compiled = _from_record(model, record, found.shared, initial)
        if compiled is not None:
            return compiled
    try:
        with rewrites_cached():
            compiled, record = _compile_model(model, initial)
    except (AttributeError, ImportError, TypeError) as exc:  # an upstream that changed
        warnings.warn(
            f"twinbayes: nutpie's internals changed ({exc!r}); compiling with "
            "nutpie.compile_pymc_model instead (the same draws, slower first runs; set "
            "TWINBAYES_PRIVATE_SPEEDUPS=0 to skip this attempt)",
            RuntimeWarning,
            stacklevel=2,
        )
        return _nutpie_compiled(model)
    if found is not None and record is not None:
        model_records.store(found.key, record)
    return compiled


STARTS = "prior"
"""Where chains start: ``"prior"``, a draw from each parameter's prior (transformed to the
unconstrained space), or ``"support_point"``, PyMC's support point jittered by U(-1, 1) there
(nutpie's default)."""


def _initial_point(model, starts: str = STARTS) -> Callable:
    """PyMC's seeded initial points of ``model``, as nutpie takes them.

    Chains start from independent draws from the prior (PyMC's ``"prior"`` initial-value
    strategy, on the unconstrained scale): overdispersed with respect to the posterior, which
    R-hat assumes (Gelman & Rubin 1992, "Inference from iterative simulation using multiple
    sequences", Statistical Science 7(4); Vehtari et al. 2021, sec. 4).  Chains started near one
    point all climb into the same mode of a posterior with separated modes, and R-hat cannot see
    the other.  The draws depend on the seed nutpie gives each chain only: same seed, same
    starts.  A start whose log density is hopeless is redrawn (:func:`guard_starts`).
    """
    from nutpie import compile_pymc as cp
    from pymc.initial_point import make_initial_point_fn

    if starts not in ("prior", "support_point"):
        raise ValueError(f"starts must be 'prior' or 'support_point', got {starts!r}")
    return cp._wrap_with_lock(
        make_initial_point_fn(
            model=model,
            default_strategy=starts,
            jitter_rvs=set(model.free_RVs) if starts == "support_point" else set(),
            return_transformed=True,
        )
    )


def _compile_model(model, initial: Callable | None = None) -> tuple[Any, ModelRecord | None]:
    """nutpie's compiled ``model`` the long way, and its record (``None`` where it cannot have one)."""
    from nutpie import compile_pymc as cp

    initial = _initial_point(model) if initial is None else initial
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, reparam = (
        cp._make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=initial,
        )
    )
    parts = _Parts(model, logp_pt.get_shared(), expand_pt.get_shared())
    if not parts.float64:
        return _nutpie_compiled(model), None
    logp = _cached_cfunc(parts.logp_src(n_dim), "logp_cfunc", logp_pt.vm.jit_fn, _SIGNATURES[0])
    expand = _cached_cfunc(
        parts.expand_src(n_dim, n_expanded), "expand_cfunc", expand_pt.vm.jit_fn, _SIGNATURES[1]
    )
    if logp is None or expand is None:
        return _nutpie_compiled(model), None
    names, slices, shapes = shape_info
    record = ModelRecord(  # plain ints: nutpie's sizes of vector variables are NumPy integers
        n_dim=int(n_dim),
        n_expanded=int(n_expanded),
        names=tuple(names),
        slices=tuple((int(s.start), int(s.stop)) for s in slices),
        shapes=tuple(tuple(int(n) for n in shape) for shape in shapes),
        reparameterized=tuple(reparam),
        logp_shared=tuple(v.name for v in logp_pt.get_shared()),
        expand_shared=tuple(v.name for v in expand_pt.get_shared()),
        logp_key=logp[1],
        expand_key=expand[1],
    )
    compiled = parts.assemble(
        n_dim, n_expanded, shape_info, reparam, (logp[0], expand[0]), initial_point_fn
    )
    return dataclasses.replace(compiled, logp_func=logp_pt, expand_func=expand_pt), record


def _nutpie_compiled(model, starts: str = STARTS):
    """``nutpie.compile_pymc_model(model)`` with this module's starting points (:func:`_initial_point`)."""
    import nutpie

    return nutpie.compile_pymc_model(
        model,
        default_initialization_strategy=starts,
        jitter_rvs=set(model.free_RVs) if starts == "support_point" else set(),
    )


def _from_record(model, record: ModelRecord, shared: dict[str, Any], initial: Callable):
    """nutpie's compiled ``model`` from its ``record``; ``None`` if a callback is not cached."""
    from nutpie import compile_pymc as cp

    try:
        parts = _Parts(
            model,
            [shared[name] for name in record.logp_shared],
            [shared[name] for name in record.expand_shared],
        )
    except KeyError:
        return None
    if not parts.float64:
        return None
    n_dim, n_expanded = record.n_dim, record.n_expanded
    logp = _load_cfunc(parts.logp_src(n_dim), "logp_cfunc", record.logp_key, _SIGNATURES[0])
    expand = _load_cfunc(
        parts.expand_src(n_dim, n_expanded), "expand_cfunc", record.expand_key, _SIGNATURES[1]
    )
    if logp is None or expand is None:
        return None
    names, slices, shapes = record.shape_info
    n_free = len(model.free_RVs)
    if names[:n_free] != [model.rvs_to_values[v].name for v in model.free_RVs]:
        return None
    initial_point_fn = cp._rv_dict_to_flat_array_wrapper(
        initial, names=names[:n_free], shapes=shapes[:n_free]
    )
    return parts.assemble(
        n_dim,
        n_expanded,
        record.shape_info,
        list(record.reparameterized),
        (logp, expand),
        initial_point_fn,
    )


class _Parts:
    """The shared data of a model's two callbacks: their copies, the callbacks' source, assembly."""

    def __init__(self, model, logp_shared: list, expand_shared: list):
        self.model = model
        self.keys = {
            var: f"shared{i}" for i, var in enumerate(dict.fromkeys([*logp_shared, *expand_shared]))
        }
        values = {self.keys[v]: np.asarray(v.get_value()) for v in self.keys}
        self.float64 = all(value.dtype == np.float64 for value in values.values())
        """Whether every shared array is float64 (what the callbacks' source reads); if not, the
        model is compiled by nutpie itself."""
        self.data = {
            k: np.array(v, dtype=float, order="C", copy=True)
            for k, v in values.items()
            if self.float64
        }
        for value in self.data.values():
            value.flags.writeable = False
        self._logp = [self.keys[v] for v in logp_shared]
        self._expand = [self.keys[v] for v in expand_shared]

    def _lines(self, keys: list[str]) -> tuple[str, str]:
        shapes = {k: v.shape for k, v in self.data.items()}
        return _shared_lines(keys, list(self.keys.values()), shapes)

    def logp_src(self, n_dim: int) -> str:
        shared, args = self._lines(self._logp)
        return _LOGP_SRC.format(n_dim=n_dim, shared=shared, args=args)

    def expand_src(self, n_dim: int, n_expanded: int) -> str:
        shared, args = self._lines(self._expand)
        return _EXPAND_SRC.format(n_dim=n_dim, n_expanded=n_expanded, shared=shared, args=args)

    def assemble(self, n_dim, n_expanded, shape_info, reparam, cfuncs, initial_point_fn):
        """nutpie's ``CompiledPyMCModel`` over the callbacks ``cfuncs`` (log density, expansion)."""
        from nutpie import compile_pymc as cp

        dims, coords = cp._prepare_dims_and_coords(self.model, shape_info, reparam)
        return cp.CompiledPyMCModel(
            _n_dim=n_dim,
            dims=dims,
            _coords=coords,
            _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
            compiled_logp_func=cfuncs[0],
            compiled_expand_func=cfuncs[1],
            initial_point_func=initial_point_fn,
            shared_data=self.data,
            shared_var_keys=self.keys,
            user_data=cp.make_user_data(self.keys, self.data),
            n_expanded=n_expanded,
            shape_info=shape_info,
            logp_func=None,
            expand_func=None,
            reparameterized_names=reparam,
        )


START_FLOOR = -1e6
"""A chain's initial point whose log density is below this (or not finite) is redrawn."""
START_TRIES = 20


def guard_starts(
    compiled, floor: float = START_FLOOR, tries: int = START_TRIES, record: list | None = None
):
    """``compiled`` whose chains do not start at hopeless points.

    nutpie starts each chain at PyMC's support point jittered by U(-1, 1) on the unconstrained
    scale.  For a nonlinear twin such a start can make the predicted level collapse, and a
    proportional error then gives a log density of -1e12 to -1e25 (``tmdd_qss_iv`` on its recovery
    design: about half the starts): the step size adapts to 0 on such gradients and the chain
    never moves (every transition divergent, R-hat 3), which no longer warm-up repairs.  A start
    whose log density, evaluated with this model's own data, is below ``floor`` or not finite is
    redrawn (the jitter with a seed derived from the chain's, up to ``tries`` times); a start
    above it is kept, so chains that start well are exactly as before.

    With ``record``, each start handed to nutpie is appended to it as ``(seed, point)``, the
    point on the unconstrained scale (nutpie's chains may call from several threads; sort by seed).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        The same model with a guarded ``initial_point_func``.
    """
    import ctypes

    draw = compiled.initial_point_func
    func = compiled.compiled_logp_func.ctypes
    user_data = compiled.user_data
    n = compiled.n_dim
    as_double = ctypes.POINTER(ctypes.c_double)

    def logp(x: np.ndarray) -> float:
        x = np.ascontiguousarray(x, dtype=float)
        grad, value = np.empty(n), np.empty(1)
        status = func(
            n,
            x.ctypes.data_as(as_double),
            grad.ctypes.data_as(as_double),
            value.ctypes.data_as(as_double),
            user_data.ctypes.data_as(ctypes.c_void_p),
        )
        return float(value[0]) if status == 0 else -np.inf

    def initial_point(seed):
        x = draw(seed)
        best, best_logp = x, logp(x)
        for k in range(tries):
            if best_logp >= floor:
                break
            x = draw(int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0]))
            if (value := logp(x)) > best_logp:
                best, best_logp = x, value
        if record is not None:
            record.append((int(seed), np.array(best, dtype=float)))
        return best

    return dataclasses.replace(compiled, initial_point_func=initial_point)


def sample_nuts(compiled, **settings):
    """``nutpie.sample(compiled, **settings)``, except that an interrupt stops the caller.

    nutpie answers Ctrl-C during sampling by returning the draws so far (for interactive use):
    a study would take them for a short fit, find it failing its gate and go on with the next
    twin.  Here the sampler is cancelled and ``KeyboardInterrupt`` raised, so that an
    interrupted run ends, with nothing written.  The draws are those of ``nutpie.sample``.

    Every chain runs at once (``cores`` defaults to ``chains``): with fewer processor cores
    than chains nutpie would run the chains in waves, each wave waiting for its slowest chain
    (the lag twin's LOO refits took 8 % longer on 2 cores).  Each chain's draws depend on the
    seed and the chain's index only, not on how many run at a time.
    """
    import nutpie

    if "chains" in settings and settings.get("cores") is None:
        settings["cores"] = settings["chains"]
    sampler = nutpie.sample(compiled, blocking=False, **settings)
    try:
        return sampler.wait()
    except BaseException:  # an interrupt, or an error: stop the chains (as nutpie does on errors)
        sampler.cancel()
        raise
