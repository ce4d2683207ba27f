"""Validation of ``least_squares``' options: each mistake is a ValueError/TypeError naming the
argument and what it accepts (never a bare NumPy or ``range()`` error, never a silent no-op).

>>> tolerance("xtol", 1e-10)
1e-10
>>> count("chunk", 0)
Traceback (most recent call last):
ValueError: chunk must be an integer >= 1, got 0
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["bounds", "count", "flag", "tolerance", "weights", "x0", "x_scale"]


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def tolerance(name: str, value: Any) -> float:
    """A stopping tolerance: a finite number >= 0."""
    v = _real(name, value)
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def count(name: str, value: Any, allow_none: bool = False) -> int | None:
    """A positive integer (``max_nfev``, ``chunk``); None when ``allow_none``."""
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= 1"
                        + (" or None" if allow_none else "") + f", got {value!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v}")
    return v


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _floats(name: str, value: Any, n: int, names: tuple[str, ...]) -> np.ndarray:
    """``value`` as n float64 numbers (a scalar is repeated)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a number or {n} numbers ({', '.join(names)}), got "
                        f"{value!r}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size != n):
        raise ValueError(f"{name} must be a number or {n} numbers ({', '.join(names)}), got "
                         f"shape {arr.shape}")
    return np.broadcast_to(arr.astype(np.float64), (n,)).copy()


def x0(value: Any, names: tuple[str, ...]) -> np.ndarray:
    """The start as a float64 vector in ``names`` order (a dict by name is accepted)."""
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        extra = sorted(set(map(str, value)) - set(names))
        if missing or extra:
            raise ValueError(f"x0 must give every parameter ({', '.join(names)}): "
                             + (f"missing {', '.join(missing)} " if missing else "")
                             + (f"unknown {', '.join(extra)}" if extra else ""))
        value = [value[n] for n in names]
    try:
        x = np.array(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"x0 must be numbers ({', '.join(names)}), got {value!r}") from None
    if x.size != len(names):
        raise ValueError(f"x0 has {x.size} values but there are {len(names)} parameters "
                         f"({', '.join(names)})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x0 must be finite, got {x.tolist()}")
    return x


def x_scale(value: Any, names: tuple[str, ...]) -> Any:
    """``'jac'`` or positive finite numbers, one per parameter."""
    if isinstance(value, str):
        if value != "jac":
            raise ValueError(f"x_scale={value!r}: use 'jac' or positive numbers")
        return value
    xs = _floats("x_scale", value, len(names), names)
    if not np.all(np.isfinite(xs) & (xs > 0)):
        raise ValueError(f"x_scale must be 'jac' or positive finite numbers, got {xs.tolist()}")
    return xs


def bounds(value: Any, names: tuple[str, ...], x: np.ndarray) -> tuple | None:
    """``(lo, hi)`` as float64 vectors, None when absent or unbounded."""
    if value is None:
        return None
    if hasattr(value, "lb") and hasattr(value, "ub"):  # scipy.optimize.Bounds
        value = (value.lb, value.ub)
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
        raise ValueError("bounds must be a pair (lower, upper) of numbers or arrays of "
                         f"{len(names)}")
    lo, hi = (_floats(f"bounds' {w}", v, x.size, names)
              for w, v in zip(("lower", "upper"), value, strict=True))
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError("bounds must not contain NaN (use -inf/inf for no bound)")
    if np.all(np.isneginf(lo)) and np.all(np.isposinf(hi)):
        return None
    bad = [n for n, lo_, hi_ in zip(names, lo, hi, strict=True) if not lo_ < hi_]
    if bad:
        raise ValueError(f"bounds: lower must be < upper for {', '.join(bad)}")
    out = [n for n, v, lo_, hi_ in zip(names, x, lo, hi, strict=True) if not lo_ <= v <= hi_]
    if out:
        raise ValueError(f"x0 is outside the bounds for {', '.join(out)}")
    return lo, hi


def weights(value: Any, M: int, m: int) -> np.ndarray | None:
    """One weight per residual (per-sample weights are repeated over its ``m`` residuals)."""
    if value is None:
        return None
    try:
        w = np.asarray(value)
    except (TypeError, ValueError):
        w = np.asarray(None)
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weights must be numbers, got dtype {w.dtype}")
    w = w.astype(np.float64).ravel()
    if w.size == M // m and m > 1:
        w = np.repeat(w, m)
    if w.size != M:
        raise ValueError(f"weights has {w.size} values; give one per sample ({M // m}) or per "
                         f"residual ({M})")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("weights must be finite and >= 0")
    return w
