"""Robust losses as SciPy's ``least_squares`` defines them, and the row scaling they imply.

With ``z = (f/C)**2`` (``C = f_scale``) the cost is ``0.5 * C**2 * sum(rho(z))``. Each loss gives
``rho(z), rho'(z), rho''(z)``; the Gauss–Newton model of the robust cost is the ordinary one of
the rescaled rows ``a_i J_i`` and ``b_i f_i`` with (SciPy's ``scale_for_robust_loss_function``)::

    a = sqrt(max(rho' + 2 rho'' f**2 / C**2, EPS)),   b = rho' / a

so the fused normal pass takes ``jscale=a, rscale=b`` and never needs J.

>>> import numpy as np
>>> rho = evaluate("huber", np.array([0.5, 3.0]), f_scale=1.0)
>>> rho[0].tolist(), rho[1].tolist()
([0.25, 5.0], [1.0, 0.3333333333333333])
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOSSES", "cost", "evaluate", "scales"]

EPS = np.finfo(float).eps


def _linear(z):
    return z, np.ones_like(z), np.zeros_like(z)


def _huber(z):
    big = z > 1
    sz = np.sqrt(np.where(big, z, 1.0))
    rho0 = np.where(big, 2 * sz - 1, z)
    rho1 = np.where(big, 1 / sz, 1.0)
    rho2 = np.where(big, -0.5 / sz**3, 0.0)
    return rho0, rho1, rho2


def _soft_l1(z):
    t = 1 + z
    return 2 * (np.sqrt(t) - 1), t**-0.5, -0.5 * t**-1.5


def _cauchy(z):
    t = 1 + z
    return np.log1p(z), 1 / t, -1 / t**2


def _arctan(z):
    t = 1 + z**2
    return np.arctan(z), 1 / t, -2 * z / t**2


#: name -> z -> (rho, rho', rho'') of SciPy's unscaled loss functions.
LOSSES = {"linear": _linear, "huber": _huber, "soft_l1": _soft_l1, "cauchy": _cauchy,
          "arctan": _arctan}


def check(loss: str, f_scale: float) -> None:
    """Raise ValueError for an unknown loss or a non-positive ``f_scale``."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {', '.join(LOSSES)}")
    if not (np.isfinite(f_scale) and f_scale > 0):
        raise ValueError(f"f_scale must be a positive number, got {f_scale!r}")


def evaluate(loss: str, f: np.ndarray, f_scale: float = 1.0) -> tuple:
    """``(C**2 rho(z), rho'(z), rho''(z)/C**2)`` at ``z = (f/C)**2``, as SciPy scales them."""
    z = (f / f_scale) ** 2
    r0, r1, r2 = LOSSES[loss](z)
    return r0 * f_scale**2, r1, r2 / f_scale**2


def cost(loss: str, f: np.ndarray, f_scale: float = 1.0) -> float:
    """``0.5 * C**2 * sum(rho((f/C)**2))``."""
    if loss == "linear":
        return 0.5 * float(f @ f)
    return 0.5 * float(np.sum(evaluate(loss, f, f_scale)[0]))


def scales(loss: str, f: np.ndarray, f_scale: float = 1.0) -> tuple[float, np.ndarray,
                                                                     np.ndarray]:
    """``(cost, a, b)``: the cost and the row scales of J and f for the Gauss–Newton model."""
    r0, r1, r2 = evaluate(loss, f, f_scale)
    a = np.sqrt(np.maximum(r1 + 2 * r2 * f**2, EPS))
    return 0.5 * float(np.sum(r0)), a, r1 / a
