"""Levenberg–Marquardt with Moré's scaled trust region (MINPACK ``lmder``/``lmpar``), and
Gauss–Newton, on a linear model of the residuals (:mod:`symgrad.lsq.qr`).

The solver sees the problem only through ``linearize(x) -> Linearization`` (cost, gradient
and a model from one fused pass): every trial point is linearised at once, so an accepted step
needs no second pass. Rules follow MINPACK: column scaling ``D = max_k |J_j|`` (or fixed
``1/x_scale``), initial radius ``100 |D x|``, radius update on the ratio of actual to predicted
reduction, and the stopping tests with SciPy's statuses (1 gtol, 2 ftol, 3 xtol, 4 ftol and
xtol, 0 max_nfev).

Bounds (``lo <= x <= hi``) are handled by a projected active-set step: a parameter sitting on a
bound whose gradient pushes it outwards is frozen for that iteration, the step is taken in the
other parameters, and the trial point is clipped to the box. The projected gradient is what
the gtol test sees.

>>> import numpy as np
>>> from symgrad.lsq.qr import NormalModel
>>> class Line:  # r = a*t + b - y, linearised exactly
...     t = np.arange(5.0); y = 2*t + 1
...     def linearize(self, x):
...         J = np.column_stack([self.t, np.ones(5)]); r = J @ x - self.y
...         return Linearization(0.5 * r @ r, J.T @ r, NormalModel(J.T @ J, J.T @ r))
>>> out = levenberg_marquardt(Line(), np.zeros(2))
>>> np.round(out.x, 12).tolist(), out.status > 0
([2.0, 1.0], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MESSAGES", "STALLED", "UNCHECKED", "Linearization", "Outcome", "default_max_nfev",
           "gauss_newton", "levenberg_marquardt", "lmpar", "stalled"]

EPS = np.finfo(float).eps
DWARF = np.finfo(float).tiny
#: Status of a stop on the ftol/xtol tests where the gradient is not small (see :func:`stalled`).
STALLED = -2
#: Status of a stop in doubt whose second opinion could not run (Dask columns: no QR model).
UNCHECKED = -3
MESSAGES = {
    STALLED: "Stalled: no step reduces the cost, but the gradient is not small (a plateau, or "
             "a direction the linear model cannot resolve): try another x0 or method.",
    UNCHECKED: "Stopped in doubt (JᵀJ numerically singular, or the gradient not small), and the "
               "second opinion of method='precise' needs J's rows in this process, which Dask "
               "columns do not give: the point may be a false minimum. Fit a sample in memory "
               "to compare, or start nearer.",
    -1: "Improper input parameters.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}


def default_max_nfev(n: int) -> int:
    """The default budget: ``200 * (n + 1)`` evaluations (each gives residuals and J).

    SciPy's ``lm`` allows ``100 * n`` with an analytic Jacobian and ``100 * (n + 1)`` Jacobians'
    worth of residuals with forward differences; twice the latter lets the slow NIST problems
    converge (MGH10 needs 343 evaluations from its first start, Bennett5 605, both P = 3).
    """
    return 200 * (n + 1)


@dataclass
class Linearization:
    """The problem at one point: cost, gradient ``g = Jᵀf`` and the linear model."""

    cost: float
    g: np.ndarray
    model: Any  # NormalModel | QRModel
    #: |f| of the model's rows (robust losses: |b f|, which is not sqrt(2 cost)); None: linear
    fnorm: float | None = None
    #: robust losses: ``sqrt(sum rho'(f²) f²)``, the norm of the residuals the gradient
    #: ``g = sum rho' J f`` is made of; None: linear (``sqrt(2 cost)``)
    wnorm: float | None = None

    @property
    def norm(self) -> float:
        """The residual norm the gradient's cosine is measured against. Not ``fnorm`` for a
        robust loss: its model rows where ``rho'' < 0`` (outliers) carry ``b f`` up to
        ``f / sqrt(eps)``, which made the gtol test pass with the gradient far from zero."""
        return float(np.sqrt(2 * self.cost)) if self.wnorm is None else self.wnorm


@dataclass
class Outcome:
    """What a solver returns: the point, its linearisation and the counts."""

    x: np.ndarray
    lin: Linearization
    nfev: int
    nit: int
    status: int
    active: np.ndarray  # parameters held on a bound at the end


def lmpar(model, d: np.ndarray, delta: float, par: float) -> tuple[float, np.ndarray]:
    """Moré's Levenberg–Marquardt parameter: ``|D p| ~ delta`` with ``(A + par D²) p = -g``."""
    p, full = model.gn_step()
    dxnorm = float(np.linalg.norm(d * p))
    fp = dxnorm - delta
    if fp <= 0.1 * delta:
        return 0.0, p
    parl = 0.0
    if full:
        wa = d * (d * p) / dxnorm
        parl = fp / delta / model.ninv0(wa)
    gnorm = float(np.linalg.norm(model.g / d))
    paru = gnorm / delta
    if paru == 0:
        paru = DWARF / min(delta, 0.1)
    par = min(max(par, parl), paru)
    if par == 0:
        par = gnorm / dxnorm
    for it in range(10):
        if par == 0:
            par = max(DWARF, 0.001 * paru)
        p, ninv = model.solve(par, d)
        dxnorm = float(np.linalg.norm(d * p))
        temp, fp = fp, dxnorm - delta
        if abs(fp) <= 0.1 * delta or (parl == 0 and fp <= temp < 0) or it == 9:
            break
        parc = fp / delta / ninv(d * (d * p) / dxnorm)
        if fp > 0:
            parl = max(parl, par)
        elif fp < 0:
            paru = min(paru, par)
        par = max(parl, par + parc)
    return par, p


def stalled(lin: Linearization, lin0: Linearization, active: np.ndarray, x: np.ndarray,
            tol: float = 1e-3) -> bool:
    """Whether a point ``x`` is not stationary on the problem's own scale: some free parameter
    has ``|g_j| > tol * |J_j| |f(x0)|`` (the cosine of MINPACK's gtol test, measured against
    the start's residual norm so that a fit down to rounding noise is not held against it).
    Residuals at rounding level (``|f| <= 1e4 eps max_j |J_j| |x_j|``, the residuals' change
    when a parameter changes by itself) are an exact fit, not a stall: their gradient is
    rounding noise, and so is ``|f(x0)|`` for a start at the answer."""
    if lin.model is None or lin0.norm <= 0:
        return False
    c = lin.model.colnorm
    if lin.norm <= 1e4 * EPS * float(np.max(c * np.abs(x), initial=0.0)):
        return False
    ok = ~active & (c > 0)
    return bool(ok.any() and np.max(np.abs(lin.g[ok]) / c[ok]) > tol * lin0.norm)


def _free(x, g, lo, hi) -> np.ndarray:
    """Parameters free to move: not on a bound that the descent direction -g pushes through."""
    if lo is None:
        return np.ones(x.size, dtype=bool)
    return ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))


def _gnorm(lin: Linearization, free: np.ndarray) -> float:
    """MINPACK's scaled gradient: max |g_j| / (|J_j| |f|) over the free parameters."""
    if lin.cost <= 0 or lin.norm <= 0:
        return 0.0
    c = lin.model.colnorm
    ok = free & (c > 0)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(lin.g[ok]) / (c[ok] * lin.norm)))


def _step_in(model, free, d, delta, par):
    """lmpar in the free parameters; zeros for the frozen ones."""
    p = np.zeros(free.size)
    if free.all():
        par, p[:] = lmpar(model, d, delta, par)
    elif free.any():
        par, p[free] = lmpar(model.restrict(np.flatnonzero(free)), d[free], delta, par)
    return par, p


def levenberg_marquardt(problem, x0: np.ndarray, *, xtol: float = 1e-8, ftol: float = 1e-8,
                        gtol: float = 1e-8, max_nfev: int | None = None,
                        x_scale: Any = "jac", bounds: tuple | None = None,
                        lin0: Linearization | None = None, factor: float = 100.0) -> Outcome:
    """MINPACK ``lmder`` on ``problem.linearize``; SciPy's tolerances and statuses."""
    x = np.array(x0, dtype=np.float64)
    lo, hi = bounds if bounds is not None else (None, None)
    n = x.size
    max_nfev = default_max_nfev(n) if max_nfev is None else max_nfev
    lin = problem.linearize(x) if lin0 is None else lin0
    nfev, nit = 1, 0
    fixed_d = None if isinstance(x_scale, str) else 1.0 / np.asarray(x_scale, dtype=float)
    d = fixed_d if fixed_d is not None else np.where(lin.model.colnorm > 0,
                                                     lin.model.colnorm, 1.0)
    xnorm = float(np.linalg.norm(d * x))
    delta = factor * xnorm if xnorm > 0 else factor
    par = 0.0
    while True:
        free = _free(x, lin.g, lo, hi)
        if _gnorm(lin, free) <= max(gtol, EPS):
            return Outcome(x, lin, nfev, nit, 1, ~free)
        if fixed_d is None:
            d = np.maximum(d, lin.model.colnorm)
        while True:  # inner loop: shrink the region until a step is accepted
            par, p = _step_in(lin.model, free, d, delta, par)
            xt = x + p if lo is None else np.clip(x + p, lo, hi)
            p = xt - x
            pnorm = float(np.linalg.norm(d * p))
            if nit == 0:
                delta = min(delta, pnorm)
            new = problem.linearize(xt)
            nfev += 1
            cost = lin.cost
            actred = -1.0
            if np.isfinite(new.cost) and 0.01 * new.cost < cost:
                actred = 1.0 - new.cost / cost if cost > 0 else 0.0
            gp = float(lin.g @ p)
            jp2 = lin.model.jp2(p)
            prered = (-gp - 0.5 * jp2) / cost if cost > 0 else 0.0
            dirder = gp / cost if cost > 0 else 0.0
            # a step clipped to the box can predict an increase (prered < 0): never accept it,
            # even when the cost rises too (actred < 0 would make the ratio positive)
            ratio = actred / prered if prered > 0 else 0.0
            if ratio <= 0.25:
                temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
                if not (0.01 * new.cost < cost) or temp < 0.1 or not np.isfinite(temp):
                    temp = 0.1
                delta = temp * min(delta, pnorm / 0.1)
                par = par / temp
            elif par == 0 or ratio >= 0.75:
                delta = pnorm / 0.5
                par = 0.5 * par
            if ratio >= 1e-4:
                x, lin = xt, new
                xnorm = float(np.linalg.norm(d * x))
                nit += 1
            status = 0
            if abs(actred) <= max(ftol, EPS) and prered <= max(ftol, EPS) and 0.5 * ratio <= 1:
                status = 2
            if delta <= max(xtol, EPS) * xnorm or pnorm == 0:
                status = 4 if status == 2 else 3
            if status:
                return Outcome(x, lin, nfev, nit, status, ~_free(x, lin.g, lo, hi))
            if nfev >= max_nfev:
                return Outcome(x, lin, nfev, nit, 0, ~_free(x, lin.g, lo, hi))
            if ratio >= 1e-4:
                break


def polish(problem, out: Outcome, bounds: tuple | None = None, max_steps: int = 8,
           max_nfev: int | None = None) -> Outcome:
    """Gauss–Newton refinement after convergence, judged by the gradient, not the cost.

    Near the minimum the cost changes by less than its rounding error, so the ftol/xtol tests
    stop a few digits short of what the data determine. Full Gauss–Newton steps are taken while
    they shrink the scaled gradient (and do not raise the cost beyond rounding) or lower the
    cost beyond rounding; the last improving point is kept.
    """
    if out.status <= 0 or out.active.any():
        return out
    x, lin, nfev = out.x, out.lin, out.nfev
    lo, hi = bounds if bounds is not None else (None, None)
    for _ in range(max_steps):
        if max_nfev is not None and nfev >= max_nfev:
            break
        p, full = lin.model.gn_step()
        if not full or not np.all(np.isfinite(p)):
            break
        xt = x + p if lo is None else np.clip(x + p, lo, hi)
        if np.array_equal(xt, x):
            break
        new = problem.linearize(xt)
        nfev += 1
        ok = np.isfinite(new.cost) and new.cost <= lin.cost * (1 + 1e-10) + DWARF
        # an ill-conditioned fit can stop (gtol) where its gradient is rounding noise but
        # the cost is not minimal: a step that lowers the cost beyond rounding improves too
        lower = ok and new.cost < lin.cost * (1 - 1e-10)
        if not ok or (_gradient(new) >= _gradient(lin) and not lower):
            break
        x, lin = xt, new
    return Outcome(x, lin, nfev, out.nit, out.status, out.active)


def _norm(v: np.ndarray) -> float:
    """|v| without overflow or underflow of the squares (parameters around 1e160)."""
    big = float(np.max(np.abs(v), initial=0.0))
    return big * float(np.linalg.norm(v / big)) if 0 < big < np.inf else big


def _gradient(lin: Linearization) -> float:
    c = lin.model.colnorm
    return float(np.linalg.norm(lin.g / np.where(c > 0, c, 1.0)))


def gauss_newton(problem, x0: np.ndarray, *, xtol: float = 1e-8, ftol: float = 1e-8,
                 gtol: float = 1e-8, max_nfev: int | None = None, bounds: tuple | None = None,
                 lin0: Linearization | None = None, **_: Any) -> Outcome:
    """Gauss–Newton steps with a backtracking (Armijo) line search; the same statuses."""
    x = np.array(x0, dtype=np.float64)
    lo, hi = bounds if bounds is not None else (None, None)
    max_nfev = default_max_nfev(x.size) if max_nfev is None else max_nfev
    lin = problem.linearize(x) if lin0 is None else lin0
    nfev, nit = 1, 0
    while True:
        free = _free(x, lin.g, lo, hi)
        if _gnorm(lin, free) <= max(gtol, EPS):
            return Outcome(x, lin, nfev, nit, 1, ~free)
        p = np.zeros(x.size)
        if free.any():
            model = lin.model if free.all() else lin.model.restrict(np.flatnonzero(free))
            p[free] = model.gn_step()[0]
        t = 1.0
        while True:
            xt = x + t * p if lo is None else np.clip(x + t * p, lo, hi)
            new = problem.linearize(xt)
            nfev += 1
            if new.cost <= lin.cost + 1e-4 * float(lin.g @ (xt - x)) or nfev >= max_nfev:
                break
            t *= 0.5
            if t < 1e-12:
                break
        dx = _norm(xt - x)
        accepted = np.isfinite(new.cost) and new.cost <= lin.cost
        status = 0
        if accepted:
            red = lin.cost - new.cost
            x, lin = xt, new
            nit += 1
            if red <= max(ftol, EPS) * max(lin.cost + red, DWARF):
                status = 2
        if dx <= max(xtol, EPS) * (max(xtol, EPS) + _norm(x)):
            status = 4 if status == 2 else 3
        if status:
            return Outcome(x, lin, nfev, nit, status, ~_free(x, lin.g, lo, hi))
        if nfev >= max_nfev:
            return Outcome(x, lin, nfev, nit, 0, ~_free(x, lin.g, lo, hi))
        if not accepted:  # rejected, not below xtol: the next iteration would repeat this one
            return Outcome(x, lin, nfev, nit, STALLED, ~free)
