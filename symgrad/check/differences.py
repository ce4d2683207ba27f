"""Numeric derivatives along a line: central differences, Richardson extrapolation, steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .report import EPS, NOISE_ULPS, STEPS

Line = Callable[[float], tuple[Any, float]]  # t -> (F(x + t*e), actual t)


@dataclass(frozen=True)
class _Diff:
    d: Any       # derivative estimate (float, or array for vector F)
    err: Any     # estimated error of d (truncation + rounding)
    fwd: Any     # second-order one-sided differences (for kink detection)
    bwd: Any
    step: float
    noise: Any   # rounding noise of fwd/bwd


def _coord_line(F: Callable[[np.ndarray], Any], x: np.ndarray, i: int) -> Line:
    def line(t: float) -> tuple[Any, float]:
        xt = x.copy()
        xt[i] = x[i] + t
        return F(xt), float(xt[i] - x[i])
    return line


def _dir_line(F: Callable[[np.ndarray], Any], x: np.ndarray, u: np.ndarray) -> Line:
    def line(t: float) -> tuple[Any, float]:
        return F(x + t * u), t
    return line


def _line(F: Callable[[np.ndarray], Any], x: np.ndarray, U: np.ndarray | None, k: int) -> Line:
    """The line through ``x`` along coordinate ``k``, or along direction ``U[k]``."""
    return _coord_line(F, x, k) if U is None else _dir_line(F, x, U[k])


def _noise(scale: Any, h: float, extra: float = 0.0) -> Any:
    return NOISE_ULPS * EPS * (np.abs(scale) + extra) / h


def _central(line: Line, f0: Any, h: float, extra: float = 0.0) -> _Diff:
    fp, tp = line(h)
    fm, tm = line(-h)
    fp2, tp2 = line(2 * h)
    fm2, tm2 = line(-2 * h)
    d1 = (fp - fm) / (tp - tm)
    d2 = (fp2 - fm2) / (tp2 - tm2)
    scale = np.maximum.reduce([np.abs(f0), np.abs(fp), np.abs(fm), np.abs(fp2), np.abs(fm2)])
    # truncation of d1 is ~ |d2 - d1| / 3; keep a safety factor of 3
    err = np.abs(d2 - d1) + _noise(scale, tp - tm, extra)
    fwd, bwd = _one_sided(f0, fp, fp2, fm, fm2, tp, tm, tp2, tm2)
    return _Diff(d1, err, fwd, bwd, tp, 4 * _noise(scale, tp, extra))


def _richardson(line: Line, f0: Any, h: float, extra: float = 0.0) -> _Diff:
    ds, pts, scale = [], [], np.abs(f0)
    for k in range(3):
        t = h / 2**k
        fp, tp = line(t)
        fm, tm = line(-t)
        ds.append((fp - fm) / (tp - tm))
        scale = np.maximum.reduce([scale, np.abs(fp), np.abs(fm)])
        pts.append((fp, fm, tp, tm))
    (fp2, fm2, tp2, tm2), (fp, fm, tp, tm) = pts[0], pts[1]
    fwd, bwd = _one_sided(f0, fp, fp2, fm, fm2, tp, tm, tp2, tm2)
    step = tp2
    r1a = (4 * ds[1] - ds[0]) / 3
    r1b = (4 * ds[2] - ds[1]) / 3
    r2 = (16 * r1b - r1a) / 15
    # |r2 - r1b| bounds the error of r1b (O(h^4)), so it over-estimates r2's (O(h^6));
    # the rounding noise of the weights (64 D(h/4) - 20 D(h/2) + D(h)) / 45 is ~6x that of D(h).
    err = np.abs(r2 - r1b) + 6.0 * _noise(scale, step, extra)
    return _Diff(r2, err, fwd, bwd, step, 4 * _noise(scale, tp, extra))


def _one_sided(f0: Any, fp: Any, fp2: Any, fm: Any, fm2: Any, tp: float, tm: float, tp2: float,
               tm2: float) -> tuple[Any, Any]:
    """Second-order one-sided differences from (0, s, 2s) and (0, -s, -2s).

    For a smooth f both equal f'(x) - s**2 f'''(x)/3 + O(s**3): they agree to O(s**3). A kink
    inside the stencil makes them differ by the jump of the slope.
    """
    del tp2, tm2  # the outer points sit at 2s up to rounding; the inner step sets the scale
    fwd = (-3 * f0 + 4 * fp - fp2) / (2 * tp)
    bwd = (3 * f0 - 4 * fm + fm2) / (-2 * tm)
    return fwd, bwd


def _pow2(h: float) -> float:
    return float(2.0 ** round(math.log2(h)))


def _base_step(method: str, scale: float, step: float | None) -> float:
    base = STEPS[method] if step is None else float(step)
    h = base * max(1.0, scale)
    return _pow2(h) if method == "richardson" else h


def _scheme(m: str) -> Callable[..., _Diff]:
    """The difference scheme of a method: central differences, or Richardson extrapolation."""
    return _central if m == "central" else _richardson


def _step_along(method: str, x: np.ndarray, U: np.ndarray | None, k: int,
                step: float | None) -> float:
    """The base step along coordinate ``k`` (scaled by ``|x_k|``) or direction ``U[k]``
    (scaled by ``max|x|``)."""
    return _base_step(method, abs(x[k]) if U is None else float(np.max(np.abs(x))), step)


def _complex_grad(fc: Callable[[np.ndarray], complex], n: int, step: float | None
                  ) -> Callable[[np.ndarray], np.ndarray]:
    def grad(x: np.ndarray) -> np.ndarray:
        out = np.empty(n)
        xc = x.astype(np.complex128)
        for i in range(n):
            h = _base_step("complex", abs(x[i]), step)
            xc[i] = x[i] + 1j * h
            out[i] = fc(xc).imag / h
            xc[i] = x[i]
        return out
    return grad


def _diff_method(m: str) -> str:
    return "richardson" if m in ("richardson", "complex") else "central"
