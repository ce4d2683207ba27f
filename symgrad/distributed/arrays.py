"""An array loss bound to Dask columns: chunk sums on the workers, the rest on the client.

:func:`symgrad.passes.split.split` writes the loss as ``G(x) + sum over chunks of C(x;
chunk)``: ``C`` holds the sums and means over samples (a mean's ``N`` is the total number of
samples, passed as the last entry of the chunk kernel's ``x``), ``G`` the data-free terms. Both
are compiled as array losses; each call runs ``C``'s compiled ``_value``/``_value_and_grad``/
``_hvp``/``_hessian`` on every chunk where it lives (tasks, or the holders of persisted columns:
:meth:`~symgrad.distributed.DaskKernel.reduce`, faults included) and sums the rows in a fixed
tree, then adds ``G`` on the client. So value, gradient, Hessian-vector product and Hessian equal
the in-memory ones up to rounding, whatever the chunking.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> f = sg.compile(sg.mean((X @ w - y)**2) + 0.5 * sg.sum(w**2), fuse=False)
>>> Xd = da.from_array(np.eye(2).repeat(3, axis=0), chunks=4)
>>> fb = bind_array(f, {"X": Xd, "y": da.ones(6, chunks=4)})
>>> fb.value([1.0, 2.0]), fb.n_chunks
(3.0, 2)
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Mapping

import numpy as np

from ..build.array_cache import cached_array
from ..ir.array_problem import array_problem
from ..passes.split import N_PARAM, split
from ..runtime.datacheck import check_index_dtype, check_names, check_rows
from .bound import DaskBound
from .columns import Chunks, aligned
from .worker import ModuleSpec, check_finite, check_lengths, load

__all__ = ["DaskArrayKernel", "bind_array", "check_index_rows", "chunk_array"]

#: the split kernels of an array kernel: (chunk kernel, rest kernel or float, index maps)
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bind_array(kernel, data: Mapping, batch=None, *,
               persist: bool = False) -> DaskBound:
    """The array kernel ``kernel`` bound to the Dask columns ``data`` (what
    :func:`symgrad.distributed.bind` returns for an array loss); ``persist=True`` keeps the
    columns on the cluster."""
    if batch is not None:
        raise TypeError("batch= is not available with Dask columns: index the Dask arrays "
                        "(X[idx]) or use DaskKernel.on_chunks / symgrad.distributed.sgd")
    parts = _split(kernel)
    check_names(data, kernel.data_names, "data array")
    chunks = aligned(data, kernel.data_names, kernel.data_shapes)
    for nm, a in zip(chunks.names, chunks.arrays, strict=True):
        if nm in kernel._rows:
            check_index_dtype(nm, a.dtype)
    chunks = chunks.sized()
    fb = DaskBound(kernel, chunks, ArrayPart(parts, chunks))
    return fb.persist() if persist else fb


def check_index_rows(gathers, names, blocks, first: int | None) -> None:
    """Every index column of a chunk (as given) names a row of the array it picks from; else
    the in-memory error, naming the value and its global row (``first``: the chunk's first)."""
    for nm, b in zip(names, blocks, strict=True):
        if nm in gathers:
            a = np.asarray(b)
            check_rows(gathers, nm, a, None if first is None else
                       range(first, first + a.shape[0]))


def _split(kernel):
    """``(chunk kernel, its x entries in the kernel's x, rest kernel or constant, its x
    entries)``, compiled once per kernel."""
    got = _SPLITS.get(kernel)
    if got is not None:
        return got
    def compile_array(node, names, policy, dtype):  # the kernel's class: no import of it here
        prob = array_problem(node, names)
        path, src, mod = cached_array(prob, policy, dtype)
        return type(kernel)(prob, src, path, mod, policy, dtype)

    if N_PARAM in kernel.params:
        raise ValueError(f"the parameter name {N_PARAM!r} is reserved on Dask columns (it "
                         "holds the number of samples): rename the parameter")
    s = split(kernel.problem.loss)
    where = dict(zip(kernel.params, kernel._offsets, strict=True))

    def entries(names) -> np.ndarray:
        return np.concatenate([np.arange(where[n], where[n] + int(np.prod(kernel.shapes[n])),
                                         dtype=np.int64) for n in names] or
                              [np.empty(0, np.int64)])

    have = {p.name for p in s.chunk_params()}
    # N (the number of samples) is the chunk kernel's last parameter when it reads it (a mean)
    cnames = [n for n in kernel.params if n in have] + [N_PARAM] * (N_PARAM in have)
    chunk = compile_array(s.chunk, cnames, kernel.policy, str(kernel.dtype))
    rest, ridx = float(s.rest) if not s.rest_params() else None, np.empty(0, np.int64)
    if rest is None:
        have = {p.name for p in s.rest_params()}
        if N_PARAM in have:
            raise NotImplementedError("a data-free term of the loss reads the number of "
                                      "samples: not supported on Dask columns")
        rnames = [n for n in kernel.params if n in have]
        rest = compile_array(s.rest, rnames, kernel.policy, str(kernel.dtype))
        ridx = entries(rnames)
    got = _SPLITS[kernel] = (chunk, entries([n for n in cnames if n != N_PARAM]), rest, ridx)
    return got


DaskArrayKernel = DaskBound


class ArrayPart:
    """An array loss's part of a :class:`~.bound.DaskBound`: the chunk kernel's
    ``_value``/``_value_and_grad``/``_hvp``/``_hessian`` on every chunk, summed, plus the rest
    kernel's on the client."""

    def __init__(self, parts, chunks: Chunks) -> None:
        self.ck, self._cidx, self.rest, self._ridx = parts
        self._with_n = N_PARAM in self.ck.params  # a sum alone does not read N
        self.spec = ModuleSpec.of(self.ck)
        self.scan = bool(self.ck._scan_always)
        self._index = tuple(nm in self.ck._rows for nm in chunks.names)
        #: index columns -> (rows they may name, the array they pick from)
        self._gathers = {nm: tuple(g) for nm, g in self.ck._rows.items()}
        #: samples per chunk (known: the columns are sized when bound)
        self._sizes = tuple(np.diff([*chunks.offsets, chunks.n_samples]).astype(int).tolist())

    def on_chunks(self, which) -> ArrayPart:
        out = copy.copy(self)
        out._sizes = tuple(self._sizes[int(i)] for i in which)
        return out

    @property
    def n_samples(self) -> int:
        return int(sum(self._sizes))

    def _xc(self, x: np.ndarray, fill: float) -> np.ndarray:
        """The chunk kernel's x: the entries it reads, then ``fill`` (N, or 0 for a tangent)
        when it reads N."""
        tail = [fill] if self._with_n else []
        return np.concatenate([x[self._cidx], tail]).astype(self.ck.dtype)

    def _rows(self, b: DaskBound, mode: str, x: np.ndarray, v=None) -> np.ndarray:
        if self.n_samples == 0:  # only empty chunks chosen (on_chunks): not a NaN mean
            raise b.no_samples()
        return b.reduce(chunk_array, mode, self._xc(x, self.n_samples),
                        None if v is None else self._xc(v, 0.0), self.ck.dims,
                        names=tuple(b.chunks.names), index=self._index, scan=self.scan,
                        gathers=self._gathers)

    def _rest(self, mode: str, x: np.ndarray, v=None):
        """The data-free terms' ``(value, gradient/HVP/Hessian or None)``, on the client."""
        if isinstance(self.rest, float):
            return self.rest, None
        r, xr = self.rest, x[self._ridx]
        return {"e": lambda: (r.value(xr), None), "g": lambda: r.value_and_grad(xr),
                "h": lambda: (0.0, r.hvp(xr, v[self._ridx])),
                "H": lambda: (0.0, r.hessian(xr))}[mode]()

    def e(self, b: DaskBound, x: np.ndarray) -> float:
        return float(self._rows(b, "e", x)[0]) + float(self._rest("e", x)[0])

    def g(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> float:
        row = self._rows(b, "g", x)
        rv, rg = self._rest("g", x)
        out[:] = 0.0
        out[self._cidx] = row[1:1 + self._cidx.size]
        if rg is not None:
            out[self._ridx] += rg
        return float(row[0]) + float(rv)

    def h(self, b: DaskBound, x: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
        row = self._rows(b, "h", x, v)
        out[:] = 0.0
        out[self._cidx] = row[:self._cidx.size]
        rh = self._rest("h", x, v)[1]
        if rh is not None:
            out[self._ridx] += rh

    def H(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> None:
        """Each chunk's (chunk kernel's compiled) Hessian, summed, plus the rest's."""
        k = self._cidx.size
        m = k + self._with_n
        out[...] = 0.0
        out[np.ix_(self._cidx, self._cidx)] = self._rows(b, "H", x).reshape(m, m)[:k, :k]
        rh = self._rest("H", x)[1]
        if rh is not None:
            out[np.ix_(self._ridx, self._ridx)] += rh


def chunk_array(spec: ModuleSpec, mode: str, x: np.ndarray, v: np.ndarray | None,
                dims: np.ndarray, where: tuple[int, int | None], *blocks,
                names: tuple[str, ...], index: tuple[bool, ...],
                scan: bool = False, gathers=None) -> np.ndarray:
    """One chunk's row of the chunk kernel (on a worker): ``[value]`` (``mode="e"``), ``[value,
    gradient...]`` (``"g"``), the Hessian times ``v`` (``"h"``) or the flat Hessian (``"H"``).
    Data columns are scanned for NaN/inf when ``scan`` or when the result is not finite; index
    columns are range-checked against ``gathers`` (a value out of range named with its row)."""
    mod = load(spec)
    dtype = x.dtype
    check_index_rows(gathers or {}, names, blocks, where[1])
    with np.errstate(over="ignore"):  # beyond float32: named below as passed, not as inf
        cols = [np.ascontiguousarray(b, dtype=np.int64) if ix else
                np.ascontiguousarray(b, dtype=dtype) for b, ix in zip(blocks, index, strict=True)]
    check_lengths(names, [c.shape[0] for c in cols], where[0])
    # the blocks as passed: a float64 value beyond a float32 module's range is named as itself
    floats = [np.asarray(b) for b, ix in zip(blocks, index, strict=True) if not ix]
    fnames = tuple(nm for nm, ix in zip(names, index, strict=True) if not ix)
    narrow = None if dtype == np.float64 else dtype
    if scan:
        check_finite(floats, fnames, where, narrow)
    n = x.shape[0]
    if mode == "e":
        row = np.array([mod._value(x, dims, *cols)], dtype=np.float64)
    elif mode == "g":
        g = np.empty(n, dtype=dtype)
        val = mod._value_and_grad(x, g, dims, *cols)
        row = np.concatenate([[val], g]).astype(np.float64)
    elif mode == "h":
        out = np.empty(n, dtype=dtype)
        mod._hvp(x, v, out, dims, *cols)
        row = out.astype(np.float64)
    else:
        H = np.empty((n, n), dtype=dtype)
        mod._hessian(x, H, dims, *cols)
        row = H.ravel().astype(np.float64)
    if not np.isfinite(row).all():
        check_finite(floats, fnames, where, narrow)
    return row
