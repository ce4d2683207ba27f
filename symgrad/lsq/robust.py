"""Robust losses as SciPy's ``least_squares`` defines them, and the row scaling they imply.

With ``z = (f/C)**2`` (``C = f_scale``) the cost is ``0.5 * C**2 * sum(rho(z))``. The
Gauss–Newton model of the robust cost is the ordinary one of the rescaled rows ``a_i J_i`` and
``b_i f_i`` with (SciPy's ``scale_for_robust_loss_function``)::

    a = sqrt(max(rho'(z) + 2 rho''(z) z, EPS)),   b = rho'(z) / a

so the fused normal pass takes ``jscale=a, rscale=b`` and never needs J.

Everything is computed from ``z`` and ``|f|``, never from ``C**2`` alone: ``C**2 rho(z)`` is
``f**2 rho(z)/z`` where ``|f| <= C`` and a form in ``C |f|`` (or ``C**2`` times a bounded or
logarithmic term) beyond, so any positive finite ``f_scale`` works without overflow
(``f_scale=1e200``: the loss is the linear one for every residual of ordinary size).

>>> import numpy as np
>>> c, a, b = scales("huber", np.array([0.5, 3.0]), f_scale=1.0)
>>> c, b.tolist()
(2.625, [1.0, 22369621.333333332])
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOSSES", "check", "cost", "scales"]

EPS = np.finfo(float).eps
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")


def check(loss, f_scale) -> None:
    """Raise ValueError for an unknown loss or an ``f_scale`` that is not a positive number."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {', '.join(LOSSES)}")
    try:
        ok = bool(np.isfinite(f_scale) and f_scale > 0) and np.ndim(f_scale) == 0
    except TypeError:
        ok = False
    if not ok or isinstance(f_scale, bool):
        raise ValueError(f"f_scale must be a positive finite number, got {f_scale!r}")


def _terms(loss: str, f: np.ndarray, C: np.float64) -> tuple:
    """``(C**2 rho(z), rho'(z), 2 rho''(z) z)`` per residual, overflow-free."""
    af = np.abs(f)
    u = af / C
    z = u * u
    inner = z <= 1
    with np.errstate(divide="ignore"):
        tz = 1.0 / (1.0 + 1.0 / z)  # z/(1+z), also for z = 0 and z = inf
    if loss == "huber":
        r0 = np.where(inner, f * f, C * (2 * af - C))
        r1 = np.where(inner, 1.0, 1.0 / np.maximum(u, 1.0))
        r2z = np.where(inner, 0.0, -r1)
    elif loss == "soft_l1":
        s1 = np.sqrt(1.0 + z)
        r0 = np.where(inner, 2 * f * f / (s1 + 1), 2 * C * (np.hypot(C, af) - C))
        r1 = 1.0 / s1
        r2z = -tz / s1
    elif loss == "cauchy":
        with np.errstate(divide="ignore"):
            big = C * C * (2 * (np.log(af) - np.log(C)) + np.log1p(1.0 / z))
        q = np.where(z > 0, np.log1p(z) / np.where(z > 0, z, 1.0), 1.0)
        r0 = np.where(inner, f * f * q, big)
        r1 = 1.0 / (1.0 + z)
        r2z = -2 * tz * r1
    else:  # arctan
        z2 = z * z
        q = np.where(z > 0, np.arctan(z) / np.where(z > 0, z, 1.0), 1.0)
        r0 = np.where(inner, f * f * q, C * C * np.arctan(z))
        r1 = 1.0 / (1.0 + z2)
        with np.errstate(divide="ignore"):
            t2 = 1.0 / (1.0 + 1.0 / z2)
        r2z = -4 * t2 * r1
    return r0, r1, r2z


def scales(loss: str, f: np.ndarray, f_scale: float = 1.0) -> tuple[float, np.ndarray,
                                                                     np.ndarray]:
    """``(cost, a, b)``: the cost and the row scales of J and f for the Gauss–Newton model."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        r0, r1, r2z = _terms(loss, np.asarray(f, dtype=np.float64), np.float64(f_scale))
        a = np.sqrt(np.maximum(r1 + r2z, EPS))
        return 0.5 * float(np.sum(r0)), a, r1 / a


def cost(loss: str, f: np.ndarray, f_scale: float = 1.0) -> float:
    """``0.5 * C**2 * sum(rho((f/C)**2))``."""
    f = np.asarray(f, dtype=np.float64)
    if loss == "linear":
        return 0.5 * float(f @ f)
    return scales(loss, f, f_scale)[0]
