"""L-BFGS with a line search satisfying the strong Wolfe conditions, on plain callables.

``lbfgs_minimize(fun_and_grad, x0)`` minimizes a smooth function given ``fun_and_grad(x) ->
(f, g)``. The direction is ``-H g`` with ``H`` the limited-memory BFGS inverse-Hessian
approximation from the last ``m`` pairs ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k`` (the
two-loop recursion, Nocedal & Wright Algorithm 7.4, with ``H_0 = (s'y / y'y) I``). The step
length satisfies the strong Wolfe conditions

    f(x + a d) <= f(x) + c1 a g'd        and        |g(x + a d)'d| <= c2 |g'd|

found by bracketing and zooming (N&W Algorithms 3.5 and 3.6) with safeguarded cubic
interpolation, so ``s'y > 0`` and the update keeps ``H`` positive definite. A trial point where
the loss or gradient is not finite is treated as "too far" (the step is cut back), so the
iterates stay where the loss is defined. When no step is found along the L-BFGS direction the
memory is dropped and steepest descent is tried once before the run stops: as ``"converged"``
when the L-BFGS step is below rounding (its predicted decrease within ``FLOOR_ULPS`` roundings
of the loss, or every component within ``FLOOR_ULPS`` roundings of x: the rounding floor), else
as ``"failed"``.

Evaluations: one ``fun_and_grad`` per trial point, usually one per iteration near a solution.

>>> import numpy as np
>>> def rosen(x):
...     a, b = x[1] - x[0]**2, 1 - x[0]
...     return 100*a*a + b*b, np.array([-400*x[0]*a - 2*b, 200*a])
>>> out = lbfgs_minimize(rosen, np.array([-1.2, 1.0]), gtol=1e-8)
>>> out.status, np.round(out.x, 6), out.nfev < 60
('converged', array([1., 1.]), True)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from ..runtime.blas import dot
from .second_order import FunAndGrad, Monitor, Outcome, norm

__all__ = ["lbfgs_minimize", "strong_wolfe", "two_loop"]


def two_loop(g: np.ndarray, pairs: deque) -> np.ndarray:
    """``H g`` for the L-BFGS inverse Hessian of ``pairs`` (s, y, 1/s'y), oldest first."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(s, q)
        q -= a * y
        alphas.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= dot(s, y) / dot(y, y)
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        b = rho * dot(y, q)
        q += (a - b) * s
    return q


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float:
    """Minimizer of the cubic through (a, fa, da) and (b, fb, db) (N&W eq. 3.59); nan if none."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not disc >= 0.0:
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0.0:
        return math.nan
    return b - (b - a) * (db + d2 - d1) / den


def _interpolate(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float:
    """A trial step between a and b: the cubic's minimizer kept 10% away from both ends."""
    lo, hi = min(a, b), max(a, b)
    t = _cubic_min(a, fa, da, b, fb, db) if math.isfinite(fb) and math.isfinite(db) else math.nan
    if not math.isfinite(t) and math.isfinite(fb):  # no cubic minimum: quadratic on a, b
        den = 2.0 * (fb - fa - da * (b - a))
        t = a - da * (b - a) ** 2 / den if den > 0 else math.nan
    margin = 0.1 * (hi - lo)
    if not (lo + margin <= t <= hi - margin):
        t = 0.5 * (a + b) if math.isfinite(fb) else a + 0.2 * (b - a)  # b undefined: stay near a
    return t


def strong_wolfe(fun_and_grad: FunAndGrad, x: np.ndarray, f0: float, g0: np.ndarray,
                 d: np.ndarray, a1: float = 1.0, *, c1: float = 1e-4, c2: float = 0.9,
                 max_evals: int = 25) -> tuple[float, float, np.ndarray, int, bool]:
    """A step length along ``d`` satisfying the strong Wolfe conditions (N&W Alg. 3.5/3.6).

    Returns ``(a, f, g, evals, wolfe)``: the step, the loss and gradient at ``x + a d``, the
    number of evaluations, and whether both conditions hold. When the evaluation budget runs
    out inside the zoom, the best point with sufficient decrease found so far is returned with
    ``wolfe=False``; ``a == 0`` means no point decreased the loss.
    """
    dphi0 = dot(g0, d)
    evals = 0
    a_prev, f_prev, dp_prev = 0.0, f0, dphi0
    a, a_max = a1, math.inf

    def phi(t: float) -> tuple[float, np.ndarray, float]:
        f, g = fun_and_grad(x + t * d)
        f = float(f)
        dp = dot(g, d) if np.isfinite(g).all() else math.nan
        return (f, g, dp) if math.isfinite(f) and math.isfinite(dp) else (math.inf, g, math.nan)

    def zoom(lo, f_lo, g_lo, dp_lo, hi, f_hi, dp_hi, evals):
        while evals < max_evals:
            t = _interpolate(lo, f_lo, dp_lo, hi, f_hi, dp_hi)
            if t in (lo, hi):  # the bracket has shrunk to rounding
                break
            f, g, dp = phi(t)
            evals += 1
            if f > f0 + c1 * t * dphi0 or f >= f_lo:
                hi, f_hi, dp_hi = t, f, dp
            else:
                if abs(dp) <= -c2 * dphi0:
                    return t, f, g, evals, True
                if dp * (hi - lo) >= 0:
                    hi, f_hi, dp_hi = lo, f_lo, dp_lo
                lo, f_lo, g_lo, dp_lo = t, f, g, dp
        return lo, f_lo, g_lo, evals, False

    g_prev = g0
    first = True
    while evals < max_evals:
        f, g, dp = phi(a)
        evals += 1
        if not math.isfinite(f):  # undefined or overflowed: too far, come back towards a_prev
            a_max = a
            a = a_prev + 0.2 * (a - a_prev)
            continue
        if f > f0 + c1 * a * dphi0 or (not first and f >= f_prev):
            return zoom(a_prev, f_prev, g_prev, dp_prev, a, f, dp, evals)
        if abs(dp) <= -c2 * dphi0:
            return a, f, g, evals, True
        if dp >= 0:
            return zoom(a, f, g, dp, a_prev, f_prev, dp_prev, evals)
        first = False
        a_prev, f_prev, g_prev, dp_prev = a, f, g, dp
        a = min(4.0 * a, a_max) if a_max == math.inf else 0.5 * (a + a_max)
    if a_prev > 0:
        return a_prev, f_prev, g_prev, evals, False
    return 0.0, f0, g0, evals, False


def lbfgs_minimize(fun_and_grad: FunAndGrad, x0: Any, *, m: int = 10, steps: int = 1000,
                   gtol: float | None = 1e-6, tol: float | None = None, c1: float = 1e-4,
                   c2: float = 0.9, max_linesearch: int = 25,
                   monitor: Monitor | None = None) -> Outcome:
    """Minimize with L-BFGS (memory ``m``) and a strong Wolfe line search.

    Args:
        fun_and_grad: ``x -> (f, g)`` (``g`` a fresh array: it is kept).
        x0: the starting point (copied).
        m: number of (s, y) pairs kept.
        steps: maximum number of iterations.
        gtol, tol: stopping rules (see :class:`symgrad.second_order.Monitor`); ignored when
            ``monitor`` is given (it carries them).
        c1, c2: the Wolfe constants, ``0 < c1 < c2 < 1``.
        max_linesearch: loss evaluations allowed per line search.
        monitor: stopping rules, callback and history (made from gtol/tol when None).

    Returns:
        Outcome: ``status`` is ``"converged"``, ``"maxiter"``/``"completed"``, ``"stopped"``,
        ``"diverged"`` (non-finite at the start) or ``"failed"`` (no step decreases the loss).
        ``step_sizes`` holds the step length of the line search that reached each iterate.
    """
    if not 0 < c1 < c2 < 1:
        raise ValueError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    if m < 1:
        raise ValueError(f"m (the number of stored pairs) must be >= 1, got {m}")
    mon = monitor or Monitor(gtol=gtol, tol=tol)
    x = x0 = np.array(x0, dtype=np.float64)
    f, g = fun_and_grad(x)
    f, g = float(f), np.asarray(g, dtype=np.float64)
    mon.nfev += 1
    pairs: deque = deque(maxlen=m)
    a_last = 1.0
    k = 0
    with np.errstate(over="ignore", invalid="ignore"):
        while k < steps:
            if mon.stop(k, x, f, g, a_last):
                break
            res = _step(fun_and_grad, x, f, g, pairs, c1, c2, max_linesearch, mon)
            if res[0] is None:  # no step decreases the loss: at the rounding floor, or a failure
                d = res[1]
                pred = 0.5 * abs(dot(g, d)) if d is not None else math.nan
                if mon.floor(k, x, f, g, pred, d, "the L-BFGS step"):
                    break
                mon.fail(k, x, x0, f, f"line search failed at step {k}: no step along the L-BFGS "
                        "or the steepest-descent direction decreases the loss (|g| = "
                        f"{norm(g):.3g}, above the rounding floor); the loss may be "
                        "noisy, or its gradient does not match its values")
                break
            a_last, x_new, f_new, g_new = res
            s, y = x_new - x, g_new - g
            sy = dot(s, y)
            if sy > 1e-10 * norm(s) * norm(y):  # curvature condition: keeps H positive definite
                pairs.append((s, y, 1.0 / sy))
            x, f, g = x_new, f_new, g_new
            k += 1
    return mon.outcome(k, steps, x, f, g, a_last)


def _step(fun_and_grad: FunAndGrad, x: np.ndarray, f: float, g: np.ndarray, pairs: deque,
          c1: float, c2: float, max_ls: int, mon: Monitor):
    """One line search along the L-BFGS direction, else along ``-g`` with an empty memory.

    Returns ``(a, x_new, f_new, g_new)``, or ``(None, d)`` when no step decreased the loss,
    ``d`` the L-BFGS step tried (None without stored pairs: no curvature to judge by).
    """
    d_qn = None
    for attempt in (0, 1):
        if attempt or not pairs:
            pairs.clear()
            d = -g
            a1 = min(1.0, 1.0 / max(norm(g), 1e-300))  # first step of length at most 1
        else:
            d = d_qn = -two_loop(g, pairs)
            a1 = 1.0
        if not dot(g, d) < 0:  # not a descent direction (rounding): restart from -g
            if attempt or not pairs:
                return None, d_qn
            continue
        a, f_new, g_new, evals, _ = strong_wolfe(fun_and_grad, x, f, g, d, a1, c1=c1, c2=c2,
                                                 max_evals=max_ls)
        mon.nfev += evals
        if a > 0 and f_new < f:
            return a, x + a * d, f_new, g_new
        if not pairs:
            return None, d_qn
    return None, d_qn
