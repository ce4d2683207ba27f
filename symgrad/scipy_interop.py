"""Hand a symgrad loss to ``scipy.optimize.minimize`` (SciPy itself stays optional).

``scipy_objective(f, data)`` bundles the callables SciPy asks for::

    obj = sg.scipy_objective(f, data={"t": t, "y": y})
    scipy.optimize.minimize(obj.fun, x0, jac=obj.jac, hess=obj.hess, method="trust-exact")
    scipy.optimize.minimize(obj.fun, x0, jac=obj.jac, hessp=obj.hessp, method="Newton-CG")
    scipy.optimize.minimize(x0=x0, method="BFGS", **obj.kwargs)      # fun and jac

``fun`` and ``jac`` share one value-and-gradient evaluation per point: SciPy calls ``fun(x)`` and
then ``jac(x)`` at the same ``x``, and the second call is served from a one-entry cache.
For a plain callable ``f(x, **data) -> (value, grad)`` there is no exact Hessian, so ``hess``
and ``hessp`` are None (SciPy then falls back to quasi-Newton or finite differences). For a
residual kernel (:func:`symgrad.compile_residuals`) the objective is ``0.5 * sum(r**2)`` and
``hess``/``hessp`` are its Gauss-Newton ``JᵀJ``, not the exact Hessian: compile the loss
(``sg.compile(sg.sum(r**2) / 2)``) for the exact one.

>>> import numpy as np
>>> obj = scipy_objective(lambda x: (float(x @ x), 2 * x))
>>> obj.fun(np.array([1.0, 2.0])), obj.jac(np.array([1.0, 2.0])), obj.hess is None
(5.0, array([2., 4.]), True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ScipyObjective", "scipy_objective"]


class ScipyObjective:
    """``fun``/``jac``/``hess``/``hessp`` callables over a fixed data set, for SciPy.

    Attributes:
        fun: ``x -> float``.  jac: ``x -> ndarray (n,)`` (a fresh array each call).
        hess: ``x -> ndarray (n, n)`` or None.  hessp: ``(x, p) -> ndarray (n,)`` or None.
        nfev: value-and-gradient evaluations so far (cache hits not counted).
    """

    def __init__(self, f: Any, data: Mapping[str, Any] | None = None) -> None:
        self._data = {str(k): np.asarray(v) for k, v in (data or {}).items()}
        self._key: np.ndarray | None = None
        self._value = 0.0
        self._grad = np.empty(0)
        self.nfev = 0
        is_kernel = all(hasattr(f, a) for a in ("value_and_grad", "hessian", "hvp"))
        if is_kernel:
            self._vg: Callable[[np.ndarray], tuple[Any, Any]] = lambda x: f.value_and_grad(
                x, **self._data
            )
            self.hess: Callable[[np.ndarray], np.ndarray] | None = self._hess
            self.hessp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = self._hessp
        elif callable(f):
            self._vg = lambda x: f(x, **self._data)
            self.hess = None
            self.hessp = None
        else:
            raise TypeError(
                "f must be a symgrad Kernel or a callable f(x, **data) -> (value, grad), "
                f"got {type(f).__name__}"
            )
        self._f = f

    def _eval(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self._key is not None and self._key.shape == x.shape and np.array_equal(self._key, x):
            return
        value, grad = self._vg(x)
        self._value = float(value)
        self._grad = np.array(grad, dtype=np.float64)
        self._key = x.copy()
        self.nfev += 1

    def fun(self, x: Any) -> float:
        """The loss at ``x``."""
        self._eval(x)
        return self._value

    def jac(self, x: Any) -> np.ndarray:
        """The gradient at ``x``."""
        self._eval(x)
        return self._grad.copy()

    def value_and_grad(self, x: Any) -> tuple[float, np.ndarray]:
        """``(fun(x), jac(x))``: ``scipy.optimize.minimize(obj.value_and_grad, x0, jac=True)``."""
        self._eval(x)
        return self._value, self._grad.copy()

    def _hess(self, x: Any) -> np.ndarray:
        return np.asarray(self._f.hessian(np.asarray(x, dtype=np.float64), **self._data))

    def _hessp(self, x: Any, p: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.asarray(self._f.hvp(x, np.asarray(p, dtype=np.float64), **self._data))

    @property
    def kwargs(self) -> dict[str, Any]:
        """``{"fun": ..., "jac": ...}`` for ``scipy.optimize.minimize(x0=x0, **obj.kwargs)``.

        ``hess``/``hessp`` are left out because SciPy warns when a method that ignores them
        receives them; pass them to the methods that use them (Newton-CG, trust-*, dogleg).
        """
        return {"fun": self.fun, "jac": self.jac}

    def __repr__(self) -> str:
        return f"ScipyObjective({self._f!r}, data={sorted(self._data)})"


def scipy_objective(f: Any, data: Mapping[str, Any] | None = None) -> ScipyObjective:
    """Wrap a Kernel (or a callable ``f(x, **data) -> (value, grad)``) for ``scipy.optimize``.

    >>> import numpy as np
    >>> obj = scipy_objective(lambda x, t: (float(np.sum((x[0] * t - 1) ** 2)),
    ...                                     np.array([np.sum(2 * (x[0] * t - 1) * t)])),
    ...                       data={"t": np.array([1.0, 2.0])})
    >>> obj.fun([1.0]), obj.jac([1.0])
    (1.0, array([4.]))
    """
    return ScipyObjective(f, data)
