"""The checks of what every kernel call takes besides data: ``x``, ``v`` and output arrays.

One rule for every kernel kind (scalar, array, residual), bound or not: ``x`` is a 1-D array
of real numbers (no strings, objects or complex numbers), converted to the kernel's float type;
an ``out`` array has exactly the result's shape and dtype, is writeable (C-contiguous where the
compiled code needs it) and shares no memory with ``x``, ``v`` or a data column (the compiled
code writes it while it reads them). Data are keyword arguments only (:func:`no_positional`).

>>> import numpy as np
>>> as_vector([1, 2], "x", "a, b", 2).tolist()
[1.0, 2.0]
>>> as_vector([1j, 2], "x", "a, b", 2)
Traceback (most recent call last):
TypeError: x must be a 1-D array of floats (a, b), got dtype complex128
>>> t = np.zeros(3)
>>> as_out(t[:2], (2,), inputs=[("data column 't'", t)])
Traceback (most recent call last):
ValueError: out overlaps data column 't' in memory: pass a separate output array
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["BoundOut", "as_out", "as_vector", "by_name", "data_inputs", "in_range",
           "no_positional", "seeded"]

_F64 = np.dtype(np.float64)


def as_vector(a, what: str, names: str | tuple[str, ...], n: int | None = None,
              dtype=_F64) -> np.ndarray:
    """``a`` as a C-contiguous 1-D array of ``dtype`` with ``n`` entries (None: any number).

    ``names`` describes the entries (``"a, b"`` or a tuple of names) in the messages. Integers
    and booleans are converted; strings, objects, complex numbers and None are a TypeError.
    """
    if not (type(a) is np.ndarray and a.dtype is dtype and a.ndim == 1
            and a.flags.c_contiguous):
        names = names if isinstance(names, str) else ", ".join(names)
        bad = f"{what} must be a 1-D array of floats" + (f" ({names})" if names else "")
        if a is None or isinstance(a, str | bytes):
            raise TypeError(f"{bad}, got {type(a).__name__}")
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{bad}, got {type(a).__name__}") from exc
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{bad}, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize:
            in_range(arr, what, dtype)
        a = np.ascontiguousarray(arr, dtype=dtype)
    if n is not None and a.shape[0] != n:
        names = names if isinstance(names, str) else ", ".join(names)
        which = f" ({names})" if names else ""
        raise ValueError(f"{what} must have {n} entries{which}, got {a.shape[0]}")
    return a


def as_out(out, shape: tuple[int, ...], what: str = "out", dtype=_F64, *,
           inputs: Iterable[tuple[str, object]] = (), contiguous: bool = False) -> np.ndarray:
    """A new array of ``shape`` when ``out`` is None, else ``out`` once checked: its type,
    dtype, shape, layout (``contiguous``), that it is writeable and that it shares no memory
    with any of ``inputs`` (``(name, array)`` pairs, named in the error)."""
    if out is None:
        return np.empty(shape, dtype)
    if type(out) is not np.ndarray or out.shape != shape or out.dtype != dtype or (
            contiguous and not out.flags.c_contiguous):
        layout = "C-contiguous " if contiguous else ""
        raise ValueError(f"{what} must be a {layout}{np.dtype(dtype)} array of shape {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{what} is read-only: pass a writeable {np.dtype(dtype)} array")
    for name, a in inputs:
        if type(a) is np.ndarray and np.may_share_memory(out, a):
            raise ValueError(f"{what} overlaps {name} in memory: pass a separate output array")
    return out


class BoundOut:
    """The ``out`` check of a kernel bound to data: the data do not move, so an array that
    passed against them is not checked against them again (only against ``x`` and ``v``).

    ``check`` is the kernel's :func:`as_out` of ``(out, shape, what, inputs)``.
    """

    def __init__(self, check, data: list[tuple[str, object]]) -> None:
        self._check, self._data, self._ok = check, data, None

    def __call__(self, out, shape: tuple[int, ...], what: str, *named) -> np.ndarray:
        if out is not None and out is not self._ok:
            self._check(out, shape, what, self._data)
            self._ok = out
        return self._check(out, shape, what, named)


def data_inputs(data: Mapping[str, object], kind: str = "data column") -> list[tuple[str, object]]:
    """The ``inputs`` of :func:`as_out` for the data a call reads (NumPy arrays only)."""
    return [(f"{kind} '{k}'", a) for k, a in data.items() if type(a) is np.ndarray]


def in_range(a: np.ndarray, what: str, dtype) -> None:
    """Raise, naming the first entry of ``a`` (finite) beyond ``dtype``'s range: a kernel that
    rounds ``a`` to ``dtype`` (float32) would compute with inf."""
    top = np.finfo(dtype).max
    big = np.flatnonzero(np.abs(a) > top)
    big = big[np.isfinite(a[big])]
    if big.size:
        raise ValueError(f"{what}[{big[0]}] = {a[big[0]]:g} is beyond the range of this "
                         f"{np.dtype(dtype)} kernel (|{what}| <= {top:.4g}), which would read "
                         "it as inf: rescale the parameters")


def no_positional(extra: tuple, names: Iterable[str], method: str, *slots) -> None:
    """Refuse data passed by position (``f.value(x, t, y)``, or a dict where ``out`` goes, as
    in ``f.grad(x, {"t": t})``): they are keyword arguments. ``slots`` are the optional
    positional arguments (``out``, the scales) that a dict of data would land in."""
    dicts = [v for v in (*slots, *extra) if isinstance(v, Mapping)]
    if not (extra or dicts):  # every call passes here: no message built
        return
    names = tuple(names)
    want = ", ".join(f"{c}=..." for c in names)
    why = f"data are keyword arguments, by column name ({want})" if names else \
        "this loss takes no data"
    if dicts:
        raise TypeError(f"{method}() got a dict by position: {why}; unpack it as "
                        f"f.{method}(x, **data)")
    raise TypeError(f"{method}() got {len(extra)} extra positional argument(s): {why}")


def seeded(seed) -> np.random.Generator:
    """``np.random.default_rng(seed)``, or an error naming ``seed`` and what it takes."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError("seed must be None, a non-negative integer, a numpy SeedSequence or "
                         f"Generator, got {seed!r}") from None


def by_name(kernel, x0: Mapping) -> np.ndarray:
    """``x0`` given as a dict of arrays by parameter name, packed by ``kernel.pack`` (which names
    a missing or unknown array); the error says it is about ``x0``."""
    try:
        return kernel.pack(**{str(k): v for k, v in x0.items()})
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"x0 by name: {exc}") from None
