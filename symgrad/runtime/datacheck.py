"""Data validation for every kernel: names, columns, batches, and non-finite values.

:func:`check_names`, :func:`column` and :func:`batch_index` check what a call passes (names,
dtypes, shapes, batch indices) and say what to pass instead. Non-finite data: one rule for all
kernels, scanned only when it can matter.

Every call validates the data cheaply (names, shapes, dtypes, lengths: no pass over the
values). A NaN or inf in a column then reaches the result: the generated arithmetic propagates
them (``relu``, ``sign`` and ``Heaviside`` are written to return NaN for NaN), so the kernels
scan the columns only when a result is non-finite, and name the first bad row. Two kinds of loss
can turn a non-finite input into a finite result, and are scanned on every call instead
(:func:`may_hide`): comparisons that pick a branch (``Piecewise``, ``Max``/``Min``, a max
reduction: ``max(0.0, nan)`` is 0.0) and powers with a symbolic exponent (``1**nan`` and
``nan**0`` are 1). An inf that ordinary arithmetic maps to a finite limit (``exp(-inf) = 0``)
is used as that limit, as IEEE 754 defines it.

>>> import numpy as np
>>> y = np.array([1.0, 2.0, np.nan])
>>> raise_non_finite({"y": y})
Traceback (most recent call last):
ValueError: data column 'y' has a non-finite value (nan) at row 2: clean or drop it before fitting
>>> raise_non_finite({"y": y}, rows=slice(0, 2))  # the batch does not read row 2
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import sympy as sp

from ..columns import closest
from ..ir.functions import Max2, Min2

__all__ = ["batch_index", "check_index_dtype", "check_names", "check_rows", "column", "may_hide",
           "non_finite_error", "overflow_error", "raise_non_finite", "result_finite"]


def may_hide(expr: sp.Basic) -> bool:
    """Whether the generated code of ``expr`` can turn a NaN/inf input into a finite output."""
    if expr.has(sp.Piecewise, sp.Max, sp.Min, Max2, Min2):
        return True
    return any(not p.exp.is_number for p in expr.atoms(sp.Pow))


def result_finite(value: float, *outs: np.ndarray) -> bool:
    """Whether a value and output arrays are all finite, in one pass without a temporary: the
    dot product of a small array with itself (BLAS, about 1 us), the sum of a large one. A dot
    or sum that overflows reads as non-finite, which only costs the caller a scan of the data
    that finds nothing."""
    if not math.isfinite(value):
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        for o in outs:
            v = o.reshape(-1)
            if v.size <= 4096:  # BLAS runs this on the calling thread
                if not math.isfinite(np.dot(v, v)):
                    return False
            elif not math.isfinite(np.add.reduce(v)):
                return False
    return True


def non_finite_error(name: str, a: np.ndarray, rows=None, kind: str = "data column",
                     unit: str = "row", start: int = 0) -> ValueError | None:
    """The error for the first non-finite value of ``a`` among ``rows`` (None: all; a slice or
    an index array: a batch), or None when they are all finite. ``a``'s first row is row
    ``start`` of the column (a chunk of it)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fc":  # integers and booleans are always finite
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        if rows is None and np.isfinite(np.add.reduce(a, axis=None)):  # the cheap common answer
            return None
    bad_rows = np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))
    if rows is not None and bad_rows.size:
        bad_rows = np.intersect1d(bad_rows, np.arange(a.shape[0])[rows])
    if not bad_rows.size:
        return None
    r = int(bad_rows[0])
    where = f"{unit} {start + r}"
    if a.ndim > 1:
        entry = tuple(int(k) for k in np.argwhere(~np.isfinite(a[r]))[0])
        where += f", entry {entry[0] if len(entry) == 1 else entry}"
    value = a[r][entry] if a.ndim > 1 else a[r]
    return ValueError(f"{kind} '{name}' has a non-finite value ({value}) at {where}: clean or "
                      "drop it before fitting")


def raise_non_finite(columns: Mapping[str, np.ndarray], rows=None, kind: str = "data column",
                     units: Mapping[str, str] | None = None) -> None:
    """Raise :func:`non_finite_error` for the first column (in order) with a non-finite value
    among ``rows``; ``units`` names a column's unit when it is not ``row`` (``element``)."""
    for name, a in columns.items():
        err = non_finite_error(name, a, rows, kind, (units or {}).get(name, "row"))
        if err is not None:
            raise err


def check_names(data: Mapping, names: tuple[str, ...], what: str) -> None:
    """Every name of ``names`` given in ``data``, and nothing else."""
    missing = [c for c in names if c not in data]
    extra = sorted(set(data) - set(names))
    if missing:
        got = ""
        if extra:  # name what was passed instead: a misspelling (yy for y) is the usual cause
            close = closest(missing[0], extra)
            got = (f"; got '{close}', which it does not use: a misspelling?" if close else
                   f"; got {', '.join(repr(e) for e in extra)}, which it does not use")
        raise TypeError(f"missing {what} '{missing[0]}': this loss needs "
                        f"{', '.join(f'{c}=...' for c in names)}{got}")
    if extra:
        raise TypeError(f"unexpected {what} '{extra[0]}' (this loss uses "
                        f"{', '.join(names) or 'none'})")


def column(name: str, a, width: int | None, unit: str = "row", scan: bool = True,
           kind: str = "data column") -> np.ndarray:
    """A validated float column: dtype, shape and (with ``scan``) every value finite; ``kind``
    is what messages call it."""
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{kind} '{name}' is not an array: {exc}") from exc
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8) and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian float32/64: the same values
    elif arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{kind} '{name}' has dtype {arr.dtype}: pass float64 or float32")
    want = 1 if width is None else 2
    if arr.ndim != want:
        shape = "(n,) (one value per element)" if unit == "element" else \
            "(N,)" if width is None else f"(N, {width})"
        raise ValueError(f"{kind} '{name}' must have shape {shape}, got {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"{kind} '{name}' must have {width} entries per sample "
                         f"(shape (N, {width})), got {arr.shape}")
    err = non_finite_error(name, arr, unit=unit, kind=kind) if scan else None
    if err is not None:
        raise err
    return arr


def batch_index(batch, n: int) -> np.ndarray:
    """A validated mini-batch (a slice is not passed here: an index array or a boolean mask) as
    int64 row numbers in ``[0, n)``."""
    idx = np.asarray(batch)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean batch mask must have shape ({n},), got {idx.shape}")
        idx = np.flatnonzero(idx)
    if idx.ndim == 1 and idx.shape[0] == 0:  # [] is a float array to NumPy
        raise ValueError("batch selects no samples")
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise TypeError("batch must be a slice, an integer index array or a boolean mask")
    if idx.min() < -n or idx.max() >= n:
        raise IndexError(f"batch indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
    idx = idx.astype(np.int64, copy=False)
    return np.where(idx < 0, idx + n, idx) if idx.min() < 0 else idx


def overflow_error(name: str, a, dtype, rows=None, kind: str = "data array",
                   start: int = 0) -> ValueError | None:
    """The error for the first finite value of ``a`` among ``rows`` (as in
    :func:`non_finite_error`) that becomes inf when cast to ``dtype`` (a float32 kernel's data),
    or None; ``start`` is the row number of ``a``'s first row (a chunk's first sample)."""
    a, dtype = np.asarray(a), np.dtype(dtype)
    if dtype.kind != "f" or a.dtype.kind not in "fiu" or a.dtype.itemsize <= dtype.itemsize \
            or not a.size:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.isinf(a.astype(dtype)) & np.isfinite(a)
    bad_rows = np.flatnonzero(bad.reshape(a.shape[0], -1).any(axis=1)) if a.ndim else \
        np.flatnonzero(bad.reshape(1))
    if rows is not None and bad_rows.size:
        bad_rows = np.intersect1d(bad_rows, np.arange(a.shape[0])[rows])
    if not bad_rows.size:
        return None
    r = int(bad_rows[0])
    where, value = f"row {r + start}", a[r] if a.ndim else a[()]
    if a.ndim > 1:
        entry = tuple(int(k) for k in np.argwhere(bad[r])[0])
        where += f", entry {entry[0] if len(entry) == 1 else entry}"
        value = a[r][entry]
    return ValueError(f"{kind} '{name}' has {value:.6g} at {where}, beyond the range of {dtype} "
                      f"(largest {np.finfo(dtype).max:.4g}), where this {dtype} kernel would "
                      "read inf: rescale the data or compile with dtype='float64'")


def check_index_dtype(name: str, dtype) -> None:
    """An index column holds integers: a float or bool column is never truncated into row
    numbers (in memory and on Dask chunks)."""
    if np.dtype(dtype).kind not in "iu":
        raise TypeError(f"index column '{name}' must hold integers, got dtype {dtype}")


def check_rows(gathers: Mapping, name: str, a: np.ndarray, rows=None) -> None:
    """Every entry of the index column ``name`` names a row of the arrays it picks from
    (``gathers[name]``: (rows, array name) pairs); else the error naming the value as given and
    its row in the data (``rows[k]``: the data row of entry k of a batch or a chunk)."""
    for size, src in gathers.get(name, ()):
        if a.size and (a.min() < 0 or a.max() >= size):
            k = int(np.argmax((a < 0) | (a >= size)))
            row = k if rows is None else int(rows[k])
            raise ValueError(f"index column '{name}' has {a[k]} in row {row}: {src} has "
                             f"rows 0..{size - 1}")
