"""Newton's method in a trust region, driven by exact Hessian-vector products.

``newton_minimize(fun_and_grad, hvp, x0)`` minimizes a smooth function given ``fun_and_grad(x)
-> (f, g)`` and ``hvp(x, v) -> H(x) v``. Each iteration approximately minimizes the quadratic
model ``m(p) = f + g'p + p'Hp/2`` inside ``|p| <= radius`` by truncated conjugate gradients
(Steihaug–Toint, Nocedal & Wright Algorithm 7.2): CG from ``p = 0`` stops at the boundary or
along a direction of negative curvature (moving to the boundary), or when the model's residual
``|g + Hp| <= min(0.5, sqrt|g|) |g|`` (superlinear convergence near a solution). The Hessian is
never formed: each CG iteration costs one HVP. The radius follows N&W Algorithm 4.1: the step is
accepted when the actual reduction is at least ``eta`` times the predicted one; the radius
shrinks to a quarter of the step when the model was poor (ratio < 1/4) and doubles when it was
good (ratio > 3/4) and the step reached the boundary. A trial point where the loss is not
finite counts as a poor model (the radius shrinks), so the iterates stay where it is defined.
The run ends as ``"converged"`` when the Newton step cannot move x (every component within
the rounding floor of x), or when the trust region collapses and the Newton step's
predicted decrease is below rounding (the rounding floor); a collapse above it is ``"failed"``.

Evaluations per iteration: one ``fun_and_grad`` and a few HVPs (at most ``max_cg``).

>>> import numpy as np
>>> def rosen(x):
...     a, b = x[1] - x[0]**2, 1 - x[0]
...     return 100*a*a + b*b, np.array([-400*x[0]*a - 2*b, 200*a])
>>> def hvp(x, v):
...     h = np.array([[1200*x[0]**2 - 400*x[1] + 2, -400*x[0]], [-400*x[0], 200.0]])
...     return h @ v
>>> out = newton_minimize(rosen, hvp, np.array([-1.2, 1.0]), gtol=1e-8)
>>> out.status, np.round(out.x, 6), out.nit < 40
('converged', array([1., 1.]), True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..runtime.blas import dot
from .second_order import FunAndGrad, Hvp, Monitor, Outcome, norm

__all__ = ["newton_minimize", "steihaug_cg"]



def _to_boundary(z: np.ndarray, d: np.ndarray, radius: float) -> tuple[float, float]:
    """The two roots ``tau`` of ``|z + tau d| = radius`` (the first <= 0 <= the second)."""
    a, b, c = dot(d, d), 2.0 * dot(z, d), dot(z, z) - radius * radius
    disc = math.sqrt(max(b * b - 4.0 * a * c, 0.0))
    q = -0.5 * (b + math.copysign(disc, b))  # the stable quadratic formula
    t1, t2 = (q / a, c / q) if q != 0 else (0.0, 0.0)
    return min(t1, t2), max(t1, t2)


def steihaug_cg(g: np.ndarray, hv: Any, radius: float, *, rtol: float,
                max_iter: int) -> tuple[np.ndarray, float, bool, int]:
    """Approximately minimize ``g'p + p'Hp/2`` over ``|p| <= radius`` (Steihaug–Toint CG).

    ``hv(v)`` returns ``H v``. Returns ``(p, model_decrease, on_boundary, n_hvp)`` where
    ``model_decrease = -(g'p + p'Hp/2) >= 0`` (computed from the CG residual, no extra HVP).
    """
    z = np.zeros_like(g)
    r = g.copy()  # residual H z + g
    d = -r
    rr = dot(r, r)
    n_hvp = 0
    stop = (rtol * math.sqrt(rr)) ** 2
    # m(z) - f = g'z + z'Hz/2 = (g'z + r'z)/2 since r = Hz + g
    for _ in range(max_iter):
        hd = hv(d)
        n_hvp += 1
        dhd = dot(d, hd)
        if not math.isfinite(dhd):
            break
        if dhd <= 0.0:  # negative curvature: go to the boundary, on the side the model prefers
            t1, t2 = _to_boundary(z, d, radius)
            rd = dot(r, d)
            m1, m2 = t1 * rd + 0.5 * t1 * t1 * dhd, t2 * rd + 0.5 * t2 * t2 * dhd
            tau = t1 if m1 < m2 else t2
            z, r = z + tau * d, r + tau * hd
            return z, -0.5 * dot(g + r, z), True, n_hvp
        alpha = rr / dhd
        z_new = z + alpha * d
        if dot(z_new, z_new) >= radius * radius:  # leaves the region: stop on its boundary
            tau = _to_boundary(z, d, radius)[1]
            z, r = z + tau * d, r + tau * hd
            return z, -0.5 * dot(g + r, z), True, n_hvp
        z = z_new
        r = r + alpha * hd
        rr_new = dot(r, r)
        if rr_new <= stop:
            break
        d = -r + (rr_new / rr) * d
        rr = rr_new
    return z, -0.5 * dot(g + r, z), False, n_hvp


def _floor(mon: Monitor, k: int, x: np.ndarray, f: float, g: np.ndarray, hv: Any,
           n_cg: int, *, by_loss: bool = True) -> bool:
    """Converged at the rounding floor: the Newton step itself (CG to 1e-6, no trust region)
    is below rounding (:func:`symgrad.train.second_order.at_rounding_floor`). Newton's steps
    follow the gradient below the loss's rounding, so only a collapsed trust region asks
    about the loss (``by_loss``); otherwise only a step that cannot move x ends the run."""
    p, pred, neg, nh = steihaug_cg(g, hv, math.inf, rtol=1e-6, max_iter=n_cg)
    mon.nhev += nh
    return not neg and mon.floor(k, x, f, g, pred, p, "the Newton step", by_loss=by_loss)


def newton_minimize(fun_and_grad: FunAndGrad, hvp: Hvp, x0: Any, *, steps: int = 1000,
                    gtol: float | None = 1e-6, tol: float | None = None, radius: float = 1.0,
                    max_radius: float = 1e10, eta: float = 0.15, max_cg: int | None = None,
                    monitor: Monitor | None = None) -> Outcome:
    """Minimize with a Newton trust-region method (Steihaug–Toint CG on exact HVPs).

    Args:
        fun_and_grad: ``x -> (f, g)``.  hvp: ``(x, v) -> H(x) v``.
        x0: the starting point (copied).
        steps: maximum number of iterations (accepted or rejected steps).
        gtol, tol: stopping rules (see :class:`symgrad.second_order.Monitor`); ignored when
            ``monitor`` is given (it carries them).
        radius: the initial trust radius.  max_radius: its ceiling.
        eta: accept a step when actual / predicted reduction > eta (``0 <= eta < 1/4``).
        max_cg: CG iterations (HVPs) per step; None: ``2 n``.
        monitor: stopping rules, callback and history (made from gtol/tol when None).

    Returns:
        Outcome: ``status`` as for :func:`symgrad.lbfgs.lbfgs_minimize` (``"failed"``: the trust
        region shrank to rounding without a step that decreases the loss); ``nhev`` counts HVPs
        and ``step_sizes`` the trust radius at each iterate.
    """
    if not 0 <= eta < 0.25:
        raise ValueError(f"eta must be in [0, 0.25), got {eta}")
    if not (0 < radius <= max_radius):
        raise ValueError(f"need 0 < radius <= max_radius, got {radius}, {max_radius}")
    mon = monitor or Monitor(gtol=gtol, tol=tol)
    x = x0 = np.array(x0, dtype=np.float64)
    f, g = fun_and_grad(x)
    f, g = float(f), np.asarray(g, dtype=np.float64)
    mon.nfev += 1
    n_cg = max_cg if max_cg is not None else 2 * x.size
    k = 0
    moved = True  # a new iterate (the stopping rules are checked once per iterate)
    force = 1.0  # scales CG's forcing term; cut after a rejected step that stopped inside
    with np.errstate(over="ignore", invalid="ignore"):
        while k < steps:
            if moved and mon.stop(k, x, f, g, radius):
                break
            gn = norm(g)
            xk = x
            p, pred, boundary, nh = steihaug_cg(
                g, lambda v, xk=xk: hvp(xk, v), radius, rtol=force * min(0.5, math.sqrt(gn)),
                max_iter=n_cg)
            mon.nhev += nh
            if not boundary and np.all(np.abs(p) <= mon.floor_rel * np.abs(x)) and _floor(
                    mon, k, x, f, g, lambda v, xk=xk: hvp(xk, v), n_cg, by_loss=False):
                break  # the step (and the exact Newton step) cannot move x: converged
            pn = norm(p)
            x_new = x + p
            f_new, g_new = fun_and_grad(x_new)
            f_new, g_new = float(f_new), np.asarray(g_new, dtype=np.float64)
            mon.nfev += 1
            ok = math.isfinite(f_new) and bool(np.isfinite(g_new).all())
            # both reductions shifted by the rounding of f (Conn, Gould & Toint 2000, 17.4.2):
            # near a minimizer they fall below it, and the ratio of two rounding errors would
            # reject good steps until the radius collapses
            # (relative to |f| alone: an absolute floor would swamp a loss of small scale)
            slack = 10.0 * mon.eps * abs(f)
            actual = f - f_new if ok else -math.inf
            if pred + slack > 0:
                rho = (actual + slack) / (pred + slack) if pred >= 0 else -math.inf
            else:  # f == 0 and the model predicts nothing: accept a step that does not worsen
                rho = 1.0 if actual >= 0 else -math.inf
            if rho < 0.25 and not boundary and ok and force > 1e-9:
                # an inexact CG step inside the region failed: on an ill-conditioned Hessian
                # the first CG steps follow the stiff directions and promise decreases below
                # the rounding of f; solve the model more accurately before shrinking
                force *= 1e-3
            elif rho < 0.25:
                radius = 0.25 * (pn if pn > 0 else radius)
            elif rho > 0.75 and boundary:
                radius = min(2.0 * radius, max_radius)
            k += 1
            moved = rho > eta and actual + slack >= 0
            if moved:
                x, f, g = x_new, f_new, g_new
                force = 1.0
            elif radius <= 1e-15 * max(1.0, norm(x)):
                if _floor(mon, k, x, f, g, lambda v, xk=xk: hvp(xk, v), n_cg):
                    break
                mon.fail(k, x, x0, f, f"trust region collapsed at step {k}: no step decreases the "
                        f"loss (radius {radius:.3g}, |g| = {gn:.3g}, above the rounding floor); "
                        "the loss may be noisy, or its gradient or HVP does not match its values")
                break
    return mon.outcome(k, steps, x, f, g, radius)
