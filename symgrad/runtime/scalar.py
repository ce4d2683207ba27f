"""Module text -> real file -> import -> Numba-compiled :class:`ScalarKernel`.

The stage that runs the generated code. The file side (the verified per-user cache directory,
atomic writes, imports) is :mod:`symgrad.build.cache`; its names are re-exported here.

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> f = sg.compile(100*(x2 - x1**2)**2 + (1 - x1)**2)
>>> f.value([-1.0, 2.0]), f.grad([-1.0, 2.0]).tolist()
(104.0, [396.0, 200.0])
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np
from numba.core.caching import NullCache
from numba.core.registry import CPUDispatcher

from ..ad.derive import KinkPolicy, derive
from ..build.cache import cache_dir, load_module, write_atomic
from ..distributed.detect import dask_args, has_dask
from ..ir.problem import Problem
from . import blas
from .argcheck import as_out, as_vector, in_range
from .base import Kernel
from .datacheck import (
    batch_index,
    check_names,
    column,
    may_hide,
    overflow_error,
    raise_non_finite,
)
from .formulas import program_text
from .numbacache import guard_numba_cache
from .threads import threaded

__all__ = ["Kernel", "ScalarKernel", "cache_dir", "load_module", "write_atomic"]

#: From this many samples the sample loop runs on threads (:mod:`.threads`) when ``parallel=None``.
PARALLEL_THRESHOLD = 50_000


class ScalarKernel(Kernel):
    """A compiled scalar loss: value, gradient, Hessian and HVP at a parameter vector ``x``.

    ``x`` is packed in :attr:`params` order (a list is accepted; a float64 array avoids a copy).
    Losses with data take the columns by name (``f.value(x, t=t, y=y)``) and an optional
    ``batch`` (an index array or a slice) to evaluate on a subset without copying.

    Arithmetic follows IEEE 754: where the loss is not defined (``1/x`` at 0, ``sqrt(-1)``)
    the value and gradient are inf or nan, never an exception (``minimize`` reports them as
    divergence, ``check_grad`` as non-finite). ``x``, ``v`` and ``out`` are checked by
    :mod:`symgrad.runtime.argcheck` (``out`` overlapping ``x``, ``v`` or a data column: a
    ValueError).
    """

    kind: str = "scalar"

    #: Models compiled with the loss (``sg.compile(loss, outputs={...})``), packed like ``x``.
    outputs: Mapping = types.MappingProxyType({})

    def __init__(self, problem: Problem, source: str, path: Path, module: types.ModuleType,
                 parallel: bool | None = None, policy: KinkPolicy | None = None) -> None:
        self.problem = problem
        #: The kink policy the derivatives were generated with.
        self.policy = policy or KinkPolicy()
        self.expr = problem.expr
        self.source = source
        self.path = Path(path)
        self.module = module
        self.vectors: tuple[str, ...] = tuple(v.name for v in problem.vectors)
        #: Scalar parameter names, then ``name[:]`` for each indexed vector (of call-time length).
        self.params: tuple[str, ...] = problem.param_names + tuple(f"{v}[:]" for v in self.vectors)
        #: Length of x, or None when it depends on the vectors' call-time length.
        self.n_params: int | None = None if self.vectors else len(self.params)
        self.shapes: dict[str, tuple] = {**dict.fromkeys(problem.param_names, ()),
                                         **dict.fromkeys(self.vectors, (None,))}
        self._samples: tuple[str, ...] = tuple(c.name for c in problem.columns)
        #: The per-sample arithmetic and the data columns it reads: float64, or float32 for
        #: ``sg.compile(loss, dtype="float32")`` (the sums over samples, x, the gradient and
        #: the results stay float64; the module says so in its ``DTYPE``).
        self.data_dtype = np.dtype(getattr(module, "DTYPE", "float64"))
        self._elements: tuple[str, ...] = tuple(e.name for e in problem.elements)
        #: Every data column the loss reads: per-sample columns, then element-wise ones.
        self.data_names: tuple[str, ...] = self._samples + self._elements
        #: The per-sample data (rows are samples: ``batch=`` picks them).
        self.sampled: tuple[str, ...] = self._samples
        self.analytic: bool = problem.analytic and self.data_dtype == np.float64
        self.parallel = parallel
        self.jit = types.SimpleNamespace(
            value=module.value, grad=module.grad, value_and_grad=module.value_and_grad,
            hessian=module.hessian, hvp=module.hvp)
        # the threaded calls of a module that has a prange twin (sample sums, no index sums)
        self._jit_par = threaded(module, len(problem.params), len(problem.reductions)) \
            if hasattr(module, "value_parallel") else self.jit
        self._widths = {c.name: c.width for c in problem.columns}
        self._n = self.n_params
        self._ns = len(problem.params)
        #: Scan the data for NaN/inf on every call (the loss can hide them), not only after a
        #: non-finite result (see :mod:`symgrad.runtime.datacheck`).
        self._scan_always: bool = may_hide(problem.expr)
        self._exact_value = None
        if not self.data_names:
            self._exact_value = _exact(module.value, 1)
            vg = _exact(module.value_and_grad, 2)
            if vg is not None:
                self.value_and_grad = self._fast_value_and_grad(vg)

    def __repr__(self) -> str:
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return f"<symgrad.Kernel params=({', '.join(self.params)}){data} at {self.path}>"

    def part(self, problem: Problem, source: str, path: Path, module: types.ModuleType
             ) -> ScalarKernel:
        """A scalar kernel of some terms of this loss (its compiled ``problem``), with this
        kernel's options: the Dask path's data terms and data-free terms."""
        return ScalarKernel(problem, source, path, module, parallel=self.parallel,
                            policy=self.policy)

    def param_names(self, size: int | None = None) -> tuple[str, ...]:
        """One name per entry of x (``x[0]``, ``x[1]``... for indexed vectors of length n)."""
        if not self.vectors:
            return self.params
        if size is None:
            return super().param_names(size)  # (the error: n comes from x's size)
        n = self.vector_length(size)
        return self.problem.param_names + tuple(f"{v}[{i}]" for v in self.vectors
                                                for i in range(n))

    def _layout(self, size: int | None) -> list[tuple[str, tuple]]:
        if size is None or not self.vectors:
            return list(self.shapes.items())
        n = self.vector_length(size)
        return [(p, s if not s else (n,)) for p, s in self.shapes.items()]

    def formulas(self) -> str:
        """The loss and its exact derivatives as the straight-line program the module computes:
        per-sample reductions ``e`` and their gradients ``g``, then the loss ``F`` of the
        parameters and reductions ``R`` and its gradient ``dx``, ``dR``."""
        d = derive(self.problem, self.policy)
        parts = [f"loss = {self.expr}"]
        if self.problem.reductions:
            parts.append("# per sample\n" + program_text(d.sample, ("e", "g")))
        parts.append("# outer\n" + program_text(d.outer, ("F", "dx", "dR")))
        return "\n".join(parts)

    def vector_length(self, size: int) -> int:
        """The vectors' length n for an x of ``size`` entries."""
        m = len(self.vectors)
        r = size - self._ns
        if r < m or r % m:
            raise ValueError(f"x must hold {self._ns} scalar(s) then {m} vector(s) of one common "
                             f"length n >= 1 ({', '.join(self.params)}), got {size} entries")
        return r // m

    # -- argument handling ------------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        n = self._n if size is None else size
        x = as_vector(x, what, self.params, n)
        if self.data_dtype != np.float64:  # the sample loop rounds x (and v) to float32
            in_range(x, what, self.data_dtype)
        if n is None:
            self.vector_length(x.shape[0])
        return x

    def _out(self, out, shape: tuple[int, ...], what: str = "out", inputs=()) -> np.ndarray:
        return as_out(out, shape, what, inputs=inputs)

    def _columns(self, args: tuple) -> dict[str, np.ndarray]:  # data_args's columns by name
        return dict(zip(self.data_names, args, strict=False))

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """Validate data (and an optional batch) into the positional tail of ``f.jit`` calls.

        ``scan=False`` skips the pass over the values that finds NaN/inf (the per-call methods
        scan only after a non-finite result, see :meth:`_checked`).
        """
        data = dict(data or {})
        if has_dask(data):  # columns on a Dask cluster: reduced there (symgrad.distributed)
            return dask_args(self, data, batch)
        if not self.data_names:
            if data:
                raise TypeError(f"this loss takes no data, got {', '.join(sorted(data))}")
            if batch is not None:
                raise TypeError("batch= needs a loss with data columns")
            return ()
        check_names(data, self.data_names, self._data_kind)
        ecols = tuple(column(name, data[name], None, "element", scan) for name in self._elements)
        if not self._samples:
            if batch is not None:
                raise TypeError("batch= selects samples of a reduction over samples (sg.mean/"
                                "sg.sum without limits); this loss has none: its data columns "
                                f"({', '.join(self._elements)}) are read element-wise")
            return ecols
        cols, n = [], None
        for name in self._samples:
            a = self._cast(name, column(name, data[name], self._widths[name], "row", scan,
                                        self._data_kind), scan)
            if n is None:
                n, first = a.shape[0], name
            elif a.shape[0] != n:
                raise ValueError(f"data column '{name}' has {a.shape[0]} samples but "
                                 f"'{first}' has {n}: columns must have the same length")
            cols.append(a)
        if n == 0:
            raise ValueError("the data columns are empty: a reduction needs at least one sample")
        idx = None
        if isinstance(batch, slice):
            cols = [c[batch] for c in cols]
            if cols[0].shape[0] == 0:
                raise ValueError(f"batch {batch} selects no samples")
        elif batch is not None:
            idx = batch_index(batch, n)
        return (*cols, *ecols, idx)

    def _cast(self, name: str, a: np.ndarray, scan: bool) -> np.ndarray:
        """A float32 kernel's column as float32 (converted once per call, as an array
        kernel's; a float32 column as given): with ``scan``, a value its cast would make inf
        is named (else a non-finite result names it, :meth:`_name_non_finite`)."""
        if self.data_dtype == np.float64 or a.dtype == self.data_dtype:
            return a
        err = overflow_error(name, a, self.data_dtype, kind=self._data_kind) if scan else None
        if err is not None:
            raise err
        with np.errstate(over="ignore"):
            return a.astype(self.data_dtype)

    def _impl(self, args: tuple) -> types.SimpleNamespace:
        """The serial or the parallel functions, by the ``parallel`` option and sample count."""
        if type(args) is not tuple:  # Dask columns: DaskArgs runs the calls on the cluster
            return args
        if self._samples and self.parallel is not False:
            n = args[0].shape[0] if args[-1] is None else args[-1].shape[0]
            if self.parallel or n >= PARALLEL_THRESHOLD:
                blas.use_threads()
                return self._jit_par
        return self.jit

    def _name_non_finite(self, data: Mapping, batch=None) -> None:  # the first one read
        raise_non_finite({c: data[c] for c in self._samples}, batch, kind=self._data_kind)
        raise_non_finite({c: data[c] for c in self._elements}, units=dict.fromkeys(
            self._elements, "element"))
        if self.data_dtype != np.float64:  # finite, but beyond float32: inf in the kernel
            for c in self._samples:
                err = overflow_error(c, data[c], self.data_dtype, batch, kind=self._data_kind)
                if err is not None:
                    raise err

    # -- the compiled calls ---------------------------------------------------------------------
    def _run(self, name: str, x, args: tuple, *outs):
        return getattr(self._impl(args), name)(x, *outs, *args)

    def _run_complex(self, x, args: tuple) -> complex:
        return self.module.value_complex(x, *args)

    def value(self, x, /, *extra, batch=None, **data) -> float:
        """The loss at ``x``."""
        if self._exact_value is not None and not data and batch is None and not extra:
            try:
                return self._exact_value(x)
            except TypeError:  # not a C-contiguous float64 vector: validate and convert below
                pass
        return Kernel.value(self, x, *extra, batch=batch, **data)

    def grad(self, x, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The gradient at ``x`` (written into ``out`` when given)."""
        if not (data or extra) and batch is None:
            return self.value_and_grad(x, out)[1]  # the fast path of data-free losses
        return Kernel.grad(self, x, out, *extra, batch=batch, **data)

    def _fast_value_and_grad(self, exact):
        """``value_and_grad`` for losses without data, the optimizers' hot path. ``exact`` takes
        only C-contiguous writeable float64 vectors, so Numba checks the types in C and the
        common call costs one Python frame; any other argument raises TypeError within a
        microsecond and takes the validating path (the compiled code checks the lengths)."""
        checked, empty = Kernel.value_and_grad.__get__(self), np.empty

        def value_and_grad(x, /, out=None, *extra):
            try:
                if extra:
                    raise TypeError
                if out is None:
                    g = empty(len(x))
                    return exact(x, g), g
                return exact(x, out), out
            except TypeError:
                return checked(x, out, *extra)

        value_and_grad.__doc__ = Kernel.value_and_grad.__doc__
        value_and_grad.__qualname__ = "ScalarKernel.value_and_grad"
        return value_and_grad


class _ExactDispatcher(CPUDispatcher):
    """A dispatcher with compilation disabled whose type mismatches fail fast.

    Numba's own mismatch path searches conversions and formats an explanation (about 30 us);
    here a mismatch is an expected event that the caller answers by converting the arguments.
    """

    def _search_new_conversions(self, *args, **kws):
        return False

    def _explain_matching_error(self, *args, **kws):
        raise TypeError("argument types do not match the compiled signature")


_VECTOR = numba.types.Array(numba.types.float64, 1, "C")


def _exact(fn, nargs: int):
    """A second dispatcher of the generated function ``fn`` for ``nargs`` C-contiguous,
    writeable float64 vectors only, loaded from (or saved to) the same on-disk cache.

    Returns None when Numba's dispatcher internals differ from the ones this was written
    against; callers then keep the validating Python path.
    """
    try:
        d = _ExactDispatcher(fn.py_func, targetoptions=dict(fn.targetoptions))
        if not isinstance(fn._cache, NullCache):  # the module's njit(cache=True)
            d.enable_caching()
            guard_numba_cache([d], Path(fn.py_func.__code__.co_filename).stem)
        d.compile((_VECTOR,) * nargs)
        d.disable_compile()
    except Exception:  # the validating path calls the module's own dispatcher instead
        return None
    return d
