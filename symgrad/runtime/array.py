"""The compiled array loss: the same calls as a scalar :class:`~symgrad.Kernel`, on packed ``x``.

``x`` packs the parameters (``f.params``, shapes in ``f.shapes``) flattened in C order;
``f.unpack(x)`` gives named views in their shapes and ``f.pack(...)`` the reverse. Data arrays are
passed by name with one row per sample; ``batch=`` (a slice, an index array or a mask) selects
samples, so a mini-batch is rows of the same arrays.

A large call runs the module's threaded cores (``parallel=None``, the default: see
:func:`work`), on as many Numba threads as :mod:`~symgrad.runtime.blas` gives BLAS; ``f.jit``
holds the serial cores (the training loops call them) unless ``parallel=True``.

>>> import numpy as np, symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> f = sg.compile(sg.mean((X @ w - y)**2))
>>> f.value(np.array([1.0, 2.0]), X=np.eye(2), y=np.array([1.0, 0.0]))
2.0
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..ad.array import gradients, topo
from ..ad.derive import KinkPolicy
from ..backend.numba.emit_par import PAR_WORK
from ..distributed.detect import dask_args, has_dask
from ..ir.array_problem import ArrayProblem
from ..ir.formula import program
from ..ir.graph import Contract, Gather, Leaf, Map, N, Reduce
from . import blas
from .argcheck import as_out, as_vector
from .base import Kernel
from .datacheck import (
    batch_index,
    check_index_dtype,
    check_names,
    check_rows,
    may_hide,
    overflow_error,
    raise_non_finite,
)

__all__ = ["AUTO_WORK", "ArrayKernel"]

#: ``parallel=None``: a call whose largest loop may reach this many elements runs the threaded
#: cores (see :func:`work`), a smaller one the serial cores. The threaded cores' own threshold
#: (``PAR_WORK``): on one thread (a busy machine) they cost 0-20% over the serial cores there
#: and about 5% on the 512 x 512 grid; on two free cores they run it 2.4x faster.
AUTO_WORK = 32768


class ArrayKernel(Kernel):
    """A compiled array loss: value, gradient, Hessian-vector product and Hessian at ``x``."""

    kind: str = "array"
    _data_kind = "data array"

    #: Models compiled with the loss (``sg.compile(loss, outputs={...})``), packed like ``x``.
    outputs: Mapping = types.MappingProxyType({})
    #: Parameter names in the order they are packed into ``x``; their shapes; the length of x.
    params: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    n_params: int
    #: The data arrays the loss reads (see :func:`setup`).
    data_names: tuple[str, ...]

    def __init__(self, problem: ArrayProblem, source: str, path: Path,
                 module: types.ModuleType, policy: KinkPolicy | None = None,
                 dtype: str = "float64", parallel: bool | None = None) -> None:
        blas.refresh()  # the BLAS thread policy applies to raw f.jit calls too
        setup(self, problem, problem.loss, source, path, module, policy, dtype)
        #: No kinks: the module has a complex-step variant (``value_complex``; float64 only).
        self.analytic: bool = problem.analytic and self.dtype == np.float64
        self.vectors: tuple[str, ...] = ()
        #: The compiled core functions, called as ``f.jit.value_and_grad(x, g, *f.data_args(d))``
        #: (the module's public wrappers also take ``idx``; a kernel gathers batches itself, so
        #: it compiles the cores alone: the wrappers would add about a second to a cold build).
        #: ``parallel=True``: the threaded cores; None/False: the serial ones.
        self.jit = types.SimpleNamespace(value=module._value,
                                         value_and_grad=module._value_and_grad, hvp=module._hvp,
                                         hessian=module._hessian)
        self._jit_serial = self.jit
        #: The threaded cores (the same bits for any number of threads). Below ``PAR_WORK``
        #: elements in their largest loop they run the serial one, a copy that LLVM optimises
        #: again inside them: so a kernel calls the serial cores itself for a call whose loops
        #: cannot reach ``PAR_WORK`` (the same bits as ``parallel=False``).
        self._jit_par = types.SimpleNamespace(value=module._value_par,
                                              value_and_grad=module._value_and_grad_par,
                                              hvp=module._hvp_par, hessian=module._hessian)
        #: True: the threaded cores; False: the serial ones; None (the default): per call, the
        #: threaded ones when the largest loop may reach :data:`AUTO_WORK` elements and
        #: outweighs the matrix products (:func:`work`), else the serial ones. The choice
        #: reads the sizes only, so a result does not depend on the number of threads; it
        #: equals the serial one to rounding (the threaded cores sum in fixed chunks).
        self.parallel: bool | None = None if parallel is None else bool(parallel)
        if self.parallel is None:
            per, fixed, per_blas, _, _ = sizes = work_sizes(problem)
            # no per-call test when no call can reach AUTO_WORK with loops outweighing products
            if fixed >= AUTO_WORK or (per > 0 and per >= per_blas):
                self._work = sizes
        elif self.parallel:
            blas.use_threads()
            per, fixed = work_sizes(problem)[:2]
            fixed = max([fixed, *(math.prod(p.shape) for p in problem.params)])
            if per > 0:  # per call: the serial cores below PAR_WORK (see _cores)
                self._work = (per, fixed)
            if per > 0 or fixed >= PAR_WORK:  # the compiled loop calls f.jit
                self.jit = self._jit_par

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return f"<symgrad.ArrayKernel params=({ps}){data}>"

    def formulas(self) -> str:
        """The loss and its gradient as straight-line array formulas (``dW1 = ...``)."""
        grads = gradients(self.problem.loss, self.problem.params, self.policy)
        return program({"loss": self.problem.loss,
                        **{f"d{p.name}": g for p, g in zip(self.problem.params, grads,
                                                            strict=True)}})

    # -- validation ------------------------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        x = as_vector(x, what, self.params, None, self.dtype)
        if x.shape != (self.n_params,):
            raise ValueError(f"{what} must be a vector of {self.n_params} values (parameters "
                             f"{', '.join(f'{n}{list(s)}' for n, s in self.shapes.items())} "
                             f"flattened), got shape {x.shape}")
        return x

    def _out(self, out, shape: tuple, what: str = "out", inputs=()) -> np.ndarray:
        return as_out(out, shape, what, self.dtype, inputs=inputs, contiguous=True)

    def _columns(self, args: tuple) -> dict[str, np.ndarray]:
        """The validated data arrays of ``data_args``'s result, by name."""
        return dict(zip(self.data_names, args[1:], strict=True))

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """Validate data (and an optional batch) into the positional tail of ``f.jit`` calls.

        ``scan=False`` skips the pass over the values that finds NaN/inf (the per-call methods
        scan only after a non-finite result, see :meth:`_checked`).
        """
        data = dict(data or {})
        if has_dask(data):  # refused there, in the user's terms (no chunk/finish split yet)
            return dask_args(self, data, batch)
        check_names(data, self.data_names, "data array")
        if not self.data_names:
            if batch is not None:
                raise TypeError("batch= needs a loss with data arrays")
            return (self.dims,)
        cols, n = read_columns(self, data)
        if n == 0:
            raise ValueError("the data arrays are empty: a reduction needs at least one sample")
        if batch is not None and n is None:
            raise TypeError("batch= selects samples; this loss reads no per-sample data")
        if scan:
            self._raise_overflow(data)
            raise_non_finite(dict(zip(self.data_names, cols, strict=True)), kind="data array")
        # A batch is gathered here, once: BLAS wants contiguous rows, and the compiled cores
        # then have one signature and no index argument.
        pick = [name in self._sampled for name in self.data_names]
        rows = None  # the data row of each selected sample (None: every row, in order)
        if isinstance(batch, slice):
            cols = [np.ascontiguousarray(c[batch]) if p else c for c, p in zip(cols, pick,
                                                                               strict=True)]
            if n is not None and cols[pick.index(True)].shape[0] == 0:
                raise ValueError(f"batch {batch} selects no samples")
            rows = range(n)[batch]
        elif batch is not None:
            rows = batch_index(batch, n)
            cols = [c[rows] if p else c for c, p in zip(cols, pick, strict=True)]
        return (self.dims, *index_columns(self, cols, rows))

    def _name_non_finite(self, data: Mapping, batch=None) -> None:
        """Raise the error for the first non-finite value of the data a call read, if any."""
        sampled = {c: data[c] for c in self.data_names if c in self._sampled}
        raise_non_finite(sampled, batch, kind="data array")
        raise_non_finite({c: data[c] for c in self.data_names if c not in self._sampled},
                         kind="data array")
        self._raise_overflow(data, batch)

    def _raise_overflow(self, data: Mapping, batch=None) -> None:
        """A float32 kernel: the error naming the first datum its cast made inf (among the rows
        ``batch`` reads), if any."""
        if self.dtype == np.float64:
            return
        for c in self.data_names:
            if c not in self._rows:
                err = overflow_error(c, data[c], self.dtype, batch if c in self._sampled else None)
                if err is not None:
                    raise err

    # -- evaluation -------------------------------------------------------------------------------
    def _run(self, name: str, x, args: tuple, *outs):
        """Call a compiled function (``args``: :meth:`data_args`'s result); a row out of range
        (of data changed since they were bound) is reported with its column and row."""
        if type(args) is not tuple:  # Dask columns: DaskArgs runs the calls on the cluster
            return getattr(args, name)(x, *outs)
        blas.refresh()
        jit = self.jit if self._work is None else self._cores(args)
        try:
            return getattr(jit, name)(x, *outs, *args)
        except ValueError as exc:
            if not str(exc).startswith("index column"):
                raise
            for col, a in zip(self.data_names, args[1:], strict=False):
                check_rows(self._rows, col, a)
            raise

    def _cores(self, args: tuple) -> types.SimpleNamespace:
        """The cores for a call on ``args`` (``_work`` set): ``parallel=True``, the threaded
        ones unless the call's loops stay below ``PAR_WORK`` elements; None, :func:`work`."""
        if self.parallel:
            big = loops(self._work, args, self._n_col) >= PAR_WORK
            return self._jit_par if big else self._jit_serial
        if work(self._work, args, self._n_col) >= AUTO_WORK:
            blas.use_threads()  # Numba's threads follow the policy from then on
            return self._jit_par
        return self.jit

    def _run_complex(self, x, args: tuple) -> complex:
        return self.module._value_complex(x, *args)


def setup(k, problem, root, source: str, path, module: types.ModuleType,
          policy: KinkPolicy | None, dtype: str) -> None:
    """The attributes every array runtime (a loss's :class:`ArrayKernel`, a model's
    ``ModelKernel``) sets from its problem: packing, data layout, the scan rule, gathers."""
    k.problem = problem
    #: The floating-point type of x, the data, the results and every buffer.
    k.dtype = np.dtype(dtype)
    k.policy = policy or KinkPolicy()
    k.expr = root
    k.source = source
    k.path = Path(path)
    k.module = module
    #: Parameter names in the order they are packed into ``x``.
    k.params = problem.param_names
    #: The shape of each parameter (``()`` for a scalar).
    k.shapes = {p.name: p.shape for p in problem.params}
    #: The length of ``x``.
    k.n_params = problem.size
    #: Data arrays read, with their per-sample shapes (whole arrays, samples=False: their shape)
    k.data_names = tuple(d.name for d in problem.data)
    k.data_shapes = {d.name: d.shape[1:] if d.per_sample else d.shape for d in problem.data}
    k._sampled = tuple(d.name for d in problem.data if d.per_sample)
    #: The per-sample data arrays (rows are samples: ``batch=`` picks them).
    k.sampled = k._sampled
    nodes = topo([root])
    #: Scan the data for NaN/inf on every call (the expression can hide them: a branch, a max
    #: reduction, a symbolic power), not only after a non-finite result.
    k._scan_always = any(
        (isinstance(n, Map) and may_hide(n.expr)) or (isinstance(n, Reduce) and n.op == "max")
        for n in nodes)
    #: integer columns -> (rows they may name, the array they pick from)
    k._rows = {}
    for n in nodes:
        if isinstance(n, Gather):
            k._rows.setdefault(n.args[1].name, []).append((int(n.args[0].shape[0]),
                                                           n.source_name))
    k.dims = np.array(problem.dims, dtype=np.int64)
    #: parallel=None: :func:`work_sizes`; True: (per sample, fixed) loop sizes; the cores are
    #: then chosen per call (see ``ArrayKernel._cores``); else None
    k._work = None
    #: 1 + the position of the first per-sample array in DATA order (0: none), see :func:`work`
    k._n_col = 1 + k.data_names.index(k._sampled[0]) if k._sampled else 0
    k._offsets = problem.offsets()


def work_sizes(problem: ArrayProblem) -> tuple[int, int, int, int, int]:
    """Sizes for :func:`work`: the elements of the largest loop nest the threaded cores may run
    (the largest node with the sample axis, per sample, and the largest without), the
    multiply-adds of the matrix products (BLAS calls, not loops), per sample and not, and the
    elements of the arrays gathers read (their adjoints scatter into one copy per chunk)."""
    per, fixed, per_blas, fixed_blas, scatter = 0, 0, 0, 0, 0
    for n in topo([problem.loss]):
        if isinstance(n, Contract):
            size = dict(zip(n.labels[0] + n.labels[1], n.args[0].shape + n.args[1].shape,
                            strict=True))
            if N in size.values():
                per_blas += math.prod(s for s in size.values() if s != N)
            else:
                fixed_blas += math.prod(size.values())
        elif isinstance(n, Leaf):
            continue
        elif n.shape and n.shape[0] == N:
            per = max(per, math.prod(n.shape[1:]))
        else:
            fixed = max(fixed, math.prod(n.shape))
        if isinstance(n, Gather):
            scatter += math.prod(n.args[0].shape)
    return per, fixed, per_blas, fixed_blas, scatter


def work(sizes: tuple[int, int, int, int, int], args: tuple, col: int) -> int:
    """An upper bound of the elements in a call's largest loop nest, or 0 when threads would
    not pay whatever the cores: the matrix products outweigh the loops (threads would take turns
    with BLAS's for little gain), or the samples' loops have fewer than 8 elements per element
    of the gathered arrays (the threaded cores' scatters then run in one chunk, into a copy of
    the target added afterwards: 6x slower than the serial core for 128 samples of a 1e4 x 16
    factorisation). ``sizes``: :func:`work_sizes`; ``args``: :meth:`ArrayKernel.data_args`'s
    result, whose ``col``-th entry holds one row per sample (0: none does). The threaded cores
    compare their exact count with ``PAR_WORK``."""
    per, _, per_blas, fixed_blas, scatter = sizes
    n = args[col].shape[0] if col else 0
    most = loops(sizes, args, col)
    return most if most >= fixed_blas + per_blas * n and per * n >= 8 * scatter else 0


def loops(sizes: tuple[int, ...], args: tuple, col: int) -> int:
    """An upper bound of the elements in a call's largest loop nest, from ``sizes``' first two
    entries (per sample, and not: :func:`work_sizes`); ``args`` and ``col`` as for :func:`work`."""
    per, fixed = sizes[:2]
    return max(fixed, per * (args[col].shape[0] if col else 0))


def read_columns(k, data: Mapping) -> tuple[list[np.ndarray], int | None]:
    """The data arrays of the array runtime ``k`` in DATA order, shapes and dtypes checked
    (index columns as given: see :func:`index_columns`), and the number of samples (None when
    no array is per sample)."""
    cols, n, first = [], None, None
    for name in k.data_names:
        sampled = name in k._sampled
        a = (_rows(name, data[name], convert=False) if name in k._rows else
             _array(name, data[name], k.data_shapes[name], k.dtype, sampled))
        if sampled and n is None:
            n, first = a.shape[0], name
        elif sampled and a.shape[0] != n:
            raise ValueError(f"data array '{name}' has {a.shape[0]} samples but '{first}' "
                             f"has {n}: every array needs one row per sample")
        cols.append(a)
    return cols, n


def index_columns(k, cols: list[np.ndarray], rows=None) -> list[np.ndarray]:
    """``cols`` with each index column range-checked as given (a uint64 2**64-1 is reported as
    such, not as -1; ``rows``: the data row of each entry of a batch) and then made int64."""
    for i, name in enumerate(k.data_names):
        if name in k._rows:
            check_rows(k._rows, name, cols[i], rows)
            cols[i] = np.ascontiguousarray(cols[i], dtype=np.int64)
    return cols


def _array(name: str, a, shape: tuple, dtype, sampled: bool = True) -> np.ndarray:
    """A float data array: ``(samples, *shape)`` per sample, or exactly ``shape``."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"data array '{name}' must be numeric, got dtype {a.dtype}")
    want = (N, *shape) if sampled else tuple(shape)
    expect = (f"(samples{''.join(f', {k}' for k in shape)})" if sampled else
              f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})")
    if a.ndim != len(want):
        raise ValueError(f"data array '{name}' must have shape {expect}, got shape {a.shape}")
    for ax, (s, w) in enumerate(zip(a.shape, want, strict=True)):
        if w != N and s != w:
            raise ValueError(f"data array '{name}' has size {s} on axis {ax}; the loss needs "
                             f"{w} (shape {expect})")
    with np.errstate(over="ignore"):  # a value beyond float32: named if the result needs it
        return np.ascontiguousarray(a, dtype=dtype)


def _rows(name: str, a, convert: bool = True) -> np.ndarray:
    """An integer column, as int64 (``convert``) or as given (then range-checked by
    :func:`~.datacheck.check_rows` on the rows a call reads before it is converted: a uint64
    2**64-1 is reported as given, not as -1). The compiled code checks the range too."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"index column '{name}' must be 1-D (one row number per sample), got "
                         f"shape {a.shape}")
    check_index_dtype(name, a.dtype)
    return np.ascontiguousarray(a, dtype=np.int64) if convert else a
