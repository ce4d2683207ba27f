"""Shared by the exact-oracle tests: kernels with a wrong gradient, residual kernels as losses."""

from __future__ import annotations

from typing import Any

import numpy as np

RTOL = 1e-12


class Perturbed:
    """A kernel whose gradient is off by ``eps`` in component ``i`` (everything else delegated)."""

    def __init__(self, k: Any, i: int = 0, eps: float = 1e-6) -> None:
        self._k, self._i, self._eps = k, i, eps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._k, name)

    def grad(self, x, **data):
        g = np.array(self._k.grad(x, **data), dtype=float)
        g[self._i] += self._eps * max(1.0, abs(g[self._i]))
        return g


class ResidualLoss:
    """½‖r‖² and Jᵀr of a residual kernel (what the lead's residual ``value``/``grad`` compute)."""

    kind = "residual"

    def __init__(self, rk: Any) -> None:
        self.rk, self.problem, self.params = rk, rk.problem, rk.params

    def value(self, x, **data) -> float:
        r = self.rk.residuals(x, **data)
        return 0.5 * float(r @ r)

    def grad(self, x, **data) -> np.ndarray:
        return self.rk.jacobian(x, **data).T @ self.rk.residuals(x, **data)

    def hessian(self, x, **data) -> np.ndarray:  # Gauss-Newton
        J = self.rk.jacobian(x, **data)
        return J.T @ J

    def hvp(self, x, v, **data) -> np.ndarray:
        J = self.rk.jacobian(x, **data)
        return J.T @ (J @ v)


def close(a, b, rtol=RTOL) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14 * max(1.0, float(np.max(np.abs(b)))))
