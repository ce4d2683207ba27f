"""What runs on a Dask worker: load a generated module once, reduce one chunk of samples.

The client ships a :class:`ModuleSpec` (the module's text, its SHA-256 digest and the module
name derived from that digest), never the SymPy expression. A worker hashes the text itself and
refuses a spec whose digest or name is not the text's: so a name never stands for another text
and is never a path. It writes the text into its own symgrad cache as ``sg_<digest>.py``
(:mod:`symgrad.build.cache`: the same verified directory and atomic write as ``sg.compile``, skipped
when the bytes are already there, so Numba's on-disk machine code for it stays valid), imports
it once per process and keeps it in :data:`LOADED` keyed by digest. In the client's own process
(Dask's local threads) the kernel's module is used as it is.

A chunk task returns one float64 row per chunk: the reductions' accumulators of the kernel's
``_acc_e``/``_acc_g``/``_acc_h`` (value, gradient and Hessian-vector sums over the chunk's
samples) followed by the chunk's sample count; rows are added up by :func:`add`.

>>> import numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> f = sg.compile(sg.mean((a - t)**2))
>>> spec = ModuleSpec.of(f)
>>> chunk_acc(spec, "g", 2, np.array([1.0]), None, (0, 0), np.array([0.0, 3.0])).tolist()
[5.0, -2.0, 2.0]
"""

from __future__ import annotations

import hashlib
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..build.cache import load_module, usable_cache_dir, write_atomic
from ..runtime.blocksums import qr_sums
from ..runtime.datacheck import non_finite_error, overflow_error
from ..runtime.threads import residual_calls

__all__ = ["LOADED", "Holder", "ModuleSpec", "Unplaced", "add", "check_finite", "check_lengths",
           "chunk_acc", "chunk_rows", "load", "module_name", "scan_chunk"]

#: Modules loaded in this process, by the SHA-256 digest of their text: ``(text, module)``.
LOADED: dict[str, tuple[str, types.ModuleType]] = {}
_LOCK = threading.Lock()


def module_name(digest: str) -> str:
    """The name (file stem) of the module whose text has this SHA-256 digest on a worker."""
    return f"sg_{digest}"


@dataclass(frozen=True)
class ModuleSpec:
    """A generated module as shipped to workers: module name, text, SHA-256 of the text.

    The name is :func:`module_name` of the digest; :func:`load` refuses any other.
    """

    name: str
    text: str
    digest: str

    @classmethod
    def of(cls, kernel) -> ModuleSpec:
        """The spec of a compiled kernel's module (this process then answers it with the
        kernel's own module)."""
        digest = hashlib.sha256(kernel.source.encode()).hexdigest()
        LOADED.setdefault(digest, (kernel.source, kernel.module))
        return cls(module_name(digest), kernel.source, digest)

    def __dask_tokenize__(self) -> str:  # hash the digest, not 50 kB of text, per task
        return self.digest


def load(spec: ModuleSpec) -> types.ModuleType:
    """The module of ``spec`` in this process: verified, cached on disk, imported once."""
    got = LOADED.get(spec.digest)
    if got is not None and got[0] == spec.text and spec.name == module_name(spec.digest):
        return got[1]  # the same text as a verified one (compared, not hashed: microseconds)
    with _LOCK:  # worker threads of one process import it once
        digest = hashlib.sha256(spec.text.encode()).hexdigest()
        if digest != spec.digest:
            raise ValueError("a symgrad module arrived corrupted (digest mismatch): "
                             f"{spec.digest[:16]}... announced, {digest[:16]}... received")
        if spec.name != module_name(digest):
            raise ValueError(f"symgrad module name {spec.name!r} is not the name of its text "
                             f"({module_name(digest)}): refused")
        got = LOADED.get(digest)
        if got is None:
            path = usable_cache_dir() / f"{spec.name}.py"
            write_atomic(path, spec.text, private=True)  # no-op when already there
            got = LOADED[digest] = (spec.text, load_module(path, source=spec.text))
    return got[1]


def _as_float(block) -> np.ndarray:
    a = np.asarray(block)
    if a.dtype.kind in "iub":
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


class Unplaced(ValueError):
    """A non-finite data value in a chunk whose first sample the worker does not know (unknown
    chunk sizes): the client finds that sample and names the row (:func:`.bound.map_reduce`)."""

    def __init__(self, chunk: int, dtype: str | None = None) -> None:
        super().__init__(f"a data column has a non-finite value in chunk {chunk}"
                         if dtype is None else f"a data column has a value beyond {dtype} in "
                         f"chunk {chunk}")
        #: the chunk, and the module's dtype when the value is finite but beyond it
        self.chunk, self.dtype = chunk, dtype

    def __reduce__(self):  # sent back from a worker as it is
        return Unplaced, (self.chunk, self.dtype)


def check_lengths(names: tuple[str, ...], lengths, chunk: int) -> None:
    """The columns' sample counts in one chunk must agree (unknown chunk sizes are not
    checked before the chunk is computed); else the in-memory kernel's error, with the chunk."""
    for name, n in zip(names[1:], lengths[1:], strict=False):
        if n != lengths[0]:
            raise ValueError(f"data column '{name}' has {n} samples but '{names[0]}' has "
                             f"{lengths[0]} in chunk {chunk}: columns must have the same "
                             "length (take them from one DataFrame, masked alike)")


def _columns(blocks, names: tuple[str, ...], where, scan: bool, dtype=None) -> list[np.ndarray]:
    """A chunk's blocks as float arrays of one length; with ``scan``, every value finite (and
    within ``dtype``'s range: a float32 module's)."""
    cols = [_as_float(b) for b in blocks]
    check_lengths(names, [c.shape[0] for c in cols], where[0])
    if scan:
        check_finite(cols, names, where, dtype)
    return cols


def _narrow(cols: list[np.ndarray], dtype) -> list[np.ndarray]:
    """The columns as a float32 module reads them (``dtype``: its ``DTYPE``): converted once per
    chunk, as the in-memory kernel converts them once per call (a value beyond float32 becomes
    inf there and is named from the columns as given)."""
    if dtype is None or np.dtype(dtype) == np.float64:
        return cols
    with np.errstate(over="ignore"):
        return [c if c.dtype == dtype else np.ascontiguousarray(c, dtype=dtype) for c in cols]


def check_finite(cols: list[np.ndarray], names: tuple[str, ...], where, dtype=None,
                 kind: str = "data column") -> None:
    """Name the first non-finite data value of a chunk by its column and global row (the
    in-memory kernel's error), then (``dtype``: a float32 module's ``DTYPE``) the first finite
    value that ``dtype`` would read as inf; :class:`Unplaced` when the chunk's first sample is
    unknown."""
    chunk, first = where
    for name, c in zip(names, cols, strict=False):
        err = non_finite_error(name, c, start=first or 0, kind=kind)
        if err is not None:
            if first is None:
                raise Unplaced(chunk)
            raise err
    for name, c in zip(names, cols, strict=False) if dtype is not None else ():
        err = overflow_error(name, c, dtype, kind=kind, start=first or 0)
        if err is not None:
            if first is None:
                raise Unplaced(chunk, dtype)
            raise err


def scan_chunk(where: tuple[int, int | None], *blocks, names: tuple[str, ...],
               dtype: str | None = None) -> None:
    """Raise the error naming a chunk's first non-finite data value (or, ``dtype``: one beyond
    its range), if any (on a worker)."""
    _columns(blocks, names, where, True, dtype)


def chunk_acc(spec: ModuleSpec, mode: str, size: int, x: np.ndarray, v: np.ndarray | None,
              where: tuple[int, int | None], *blocks, names: tuple[str, ...] = (),
              scan: bool = False) -> np.ndarray:
    """One chunk's accumulators (``size`` entries) and sample count: ``[acc..., n]``.

    ``mode`` is ``"e"`` (values), ``"g"`` (values, gradients), ``"h"`` (values, gradients,
    Hessian times ``v``) or ``"H"`` (mode ``"h"`` for each unit vector: an ``(n_params,
    size + 1)`` array, for the Hessian). ``where`` is ``(chunk number, first sample or
    None)``. The data are scanned for NaN/inf when ``scan`` (the loss can hide them) or when
    the result is not finite, as in memory (:mod:`symgrad.runtime.datacheck`).
    """
    mod = load(spec)
    names = names or tuple(mod.DATA)
    cols = _columns(blocks, names, where, scan, getattr(mod, "DTYPE", None))
    if mode == "H":
        return np.stack([_acc(mod, "h", size, x, e, cols, names, where)
                         for e in np.eye(x.shape[0])])
    return _acc(mod, mode, size, x, v, cols, names, where)


def _acc(mod, mode: str, size: int, x, v, given: list[np.ndarray], names, where) -> np.ndarray:
    cols = _narrow(given, getattr(mod, "DTYPE", None))
    n = cols[0].shape[0]
    acc = np.zeros(size)
    if mode == "h":
        mod._acc_h(x, v, *cols, None, 0, n, acc)
    else:
        getattr(mod, f"_acc_{mode}")(x, *cols, None, 0, n, acc)
    if not np.isfinite(acc).all():
        check_finite(given, names, where, getattr(mod, "DTYPE", None))
    out = np.empty(size + 1)
    out[:size] = acc
    out[size] = n
    return out


def chunk_rows(spec: ModuleSpec, what: str, x: np.ndarray, w: np.ndarray | None,
               where: tuple[int, int | None], *blocks, names: tuple[str, ...],
               scan: bool = False) -> np.ndarray:
    """One chunk's residuals (``what="residuals"``), Jacobian rows (``"jacobian"``), ``[J^T J
    (flat), J^T r, r^T r]`` (``"normal"``, the fused pass), ``J v`` (``"jvp"``, ``w=v``), ``J^T
    u`` (``"vjp"``, ``w=u`` whole, sliced here at the chunk's first sample), ``J^T J v``
    (``"gn"``, ``w=v``) or the chunk's QR factor of ``[J | r]`` (``"qr"``), by the module's
    chunk functions (on a worker); data scanned as by :func:`chunk_acc` (bad data are named; a
    bad x is the solver's business)."""
    mod = load(spec)
    dtype = getattr(mod, "DTYPE", None)  # a float32 module reads float64 chunks as float32
    given = _columns(blocks, names, where, scan, dtype)
    cols = _narrow(given, dtype)
    n, m, P = cols[0].shape[0], int(mod.M_PER_SAMPLE), x.shape[0]
    # the drivers' chunks in order, as a serial kernel calls them: the same bits, and the
    # drivers (argument checks for standalone use) are not compiled on the worker
    mod = residual_calls(mod, P, threads=False) if hasattr(mod, "_normal_run") else mod
    if what == "normal":
        A, g = np.empty((P, P)), np.empty(P)
        rtr = mod.normal(x, A, g, None, None, *cols)
        got = np.concatenate([A.ravel(), g, [rtr]])
    elif what == "qr":  # this chunk's factor of [J | r] (method="precise"), merged on the client
        def rows(lo, hi):
            J, r = np.empty(((hi - lo) * m, P)), np.empty((hi - lo) * m)
            mod.rows(x, lo, hi, J, r, *cols)
            return J, r
        got = qr_sums(rows, n, P, m)
    elif what == "residuals":  # not rows' r: another function, which may round differently
        got = mod.residuals(x, np.empty(n * m), *cols)
    elif what == "jacobian":
        got = mod.rows(x, 0, n, np.empty((n * m, P)), np.empty(n * m), *cols)
    elif what == "vjp":
        got = mod.vjp(x, np.ascontiguousarray(w[where[1] * m:(where[1] + n) * m]),
                      np.empty(P), *cols)
    else:
        got = mod.jvp(x, w, np.empty(n * m), *cols)
        if what == "gn":
            got = mod.vjp(x, got, np.empty(P), *cols)
    if not np.isfinite(got).all():
        check_finite(given, names, where, dtype)
    return got


def chunk_group(spec: ModuleSpec, chunk, args: tuple, kwargs: dict, layout: tuple,
                *blocks, only: tuple | None = None, mapper=map) -> np.ndarray:
    """``chunk`` over several chunks held by this worker (those numbered in ``only``, if
    given: a chunk numbered k times counts k times, as its rows repeated would), summed in
    chunk order: ``layout`` holds ``(chunk number, first sample, number of blocks)`` of each.
    ``mapper`` may run the chunks side by side (a thread pool's); the sum is the same."""
    todo, times, at = [], [], 0
    for i, first, nb in layout:
        k = 1 if only is None else only.count(i)
        if k:
            todo.append((i, first, blocks[at:at + nb]))
            times.append(k)
        at += nb
    rows = list(mapper(lambda c: chunk(spec, *args, c[:2], *c[2], **kwargs), todo))
    out = np.zeros_like(np.asarray(rows[0], dtype=np.float64))
    for row, k in zip(rows, times, strict=True):
        for _ in range(k):  # added k times (not scaled): the tasks' sum of the repeated rows
            out += row
    return out


class Holder:
    """A Dask actor holding the persisted chunks one worker keeps (its ``layout`` and blocks):
    calls reach it straight from the client, without a task through the scheduler. With
    ``threads`` > 1 (the worker's), its chunks run side by side on that many threads (the
    kernels release the GIL)."""

    def __init__(self, layout: tuple, threads: int, *blocks) -> None:
        self.layout, self.blocks = layout, blocks
        self._pool = ThreadPoolExecutor(threads) if threads > 1 and len(layout) > 1 else None

    def run(self, spec: ModuleSpec, chunk, args: tuple, kwargs: dict,
            only: tuple | None = None) -> np.ndarray:
        """:func:`chunk_group` over the chunks held here (those numbered in ``only``, if given,
        each as many times as it is numbered there)."""
        return chunk_group(spec, chunk, args, kwargs, self.layout, *self.blocks, only=only,
                           mapper=map if self._pool is None else self._pool.map)


def add(*rows: np.ndarray) -> np.ndarray:
    """The sum of chunk rows, in the order given (a fixed tree, so results are reproducible)."""
    out = np.array(rows[0], dtype=np.float64, copy=True)
    for r in rows[1:]:
        out += r
    return out
