"""What is checked: a Kernel (duck-typed) or plain callables, as value/gradient/HVP functions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..distributed.detect import has_dask
from .report import METHODS


@dataclass(frozen=True)
class _Target:
    fun: Callable[[np.ndarray], float] | None
    grad: Callable[[np.ndarray], np.ndarray]
    hess: Callable[[np.ndarray], np.ndarray] | None
    hvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    fun_complex: Callable[[np.ndarray], complex] | None
    analytic: bool
    kernel: Any  # the Kernel (for expr/params), or None
    names: tuple[str, ...] | None
    data: Mapping[str, Any] | None = None  # the data keywords (for the exact oracle)
    float32: bool = False  # a kernel computing in float32 (its derivatives: float32 rounding)


def computes_in_float32(f: Any) -> bool:
    """Whether a kernel's arithmetic is float32: an array kernel's ``dtype``, a scalar or fused
    kernel's ``data_dtype``."""
    for attr in ("dtype", "data_dtype"):
        with contextlib.suppress(TypeError):
            if np.dtype(getattr(f, attr, np.float64)) == np.float32:
                return True
    return False


def _derivatives(data: Mapping[str, Any], grad: Callable, hess: Callable | None,
                 hvp: Callable | None) -> dict[str, Any]:
    """``grad``, ``hess`` and ``hvp`` as float64 functions of ``x`` alone (``data`` bound)."""
    return dict(
        grad=lambda x: np.asarray(grad(x, **data), dtype=np.float64),
        hess=None if hess is None else (lambda x: np.asarray(hess(x, **data), np.float64)),
        hvp=None if hvp is None else (lambda x, v: np.asarray(hvp(x, v, **data), np.float64)),
    )


def _is_kernel(f: Any) -> bool:
    return not isinstance(f, tuple | list) and hasattr(f, "grad") and hasattr(f, "value")


def _target(f: Any, data: Mapping[str, Any] | None, n: int, *, hessian: bool,
            names: Sequence[str] | None) -> _Target:
    data = dict(data or {})
    if _is_kernel(f):
        params = tuple(getattr(f, "params", ()) or ())
        if hasattr(f, "param_names") and getattr(f, "vectors", ()):
            with contextlib.suppress(ValueError):  # one name per entry: lam, x[0], x[1]...
                params = tuple(f.param_names(n))
        elif getattr(f, "labels", None) is not None:  # array kernels: W1[0, 1], b1[3]...
            params = tuple(f.labels)
        nm = tuple(names) if names is not None else (params if len(params) == n else None)
        vc = getattr(f, "value_complex", None)
        if has_dask(data):  # no complex step on Dask columns: differences or the oracle
            vc = None
        analytic = bool(getattr(f, "analytic", False)) and vc is not None
        return _Target(
            fun=lambda x: float(f.value(x, **data)),
            **_derivatives(data, f.grad, getattr(f, "hessian", None), getattr(f, "hvp", None)),
            fun_complex=None if vc is None else (lambda xc: complex(vc(xc, **data))),
            analytic=analytic,
            kernel=f,
            names=nm,
            data=data,
            float32=computes_in_float32(f),
        )
    if isinstance(f, tuple | list) and 2 <= len(f) <= 3 and all(
        c is None or callable(c) for c in f
    ):
        nm = tuple(names) if names is not None else None
        if not hessian:
            if len(f) != 2 or f[0] is None or f[1] is None:
                raise TypeError("check_grad: f must be a Kernel or a pair (fun, grad) of callables")
            fun, grad = f
            return _Target(
                fun=lambda x: float(fun(x, **data)),
                **_derivatives(data, grad, None, None),
                fun_complex=lambda xc: complex(np.asarray(fun(xc, **data)).item()),
                analytic=False, kernel=None, names=nm,
            )
        grad, hess, *rest = f
        hvp = rest[0] if rest else None
        if grad is None or (hess is None and hvp is None):
            raise TypeError(
                "check_hessian: f must be a Kernel or a tuple (grad, hess) or (grad, hess, hvp) "
                "of callables (hess may be None when hvp is given and directions=k is used)"
            )
        return _Target(
            fun=None,
            **_derivatives(data, grad, hess, hvp),
            fun_complex=None, analytic=False, kernel=None, names=nm,
        )
    what = "a Kernel or a pair (fun, grad)" if not hessian else \
        "a Kernel or a tuple (grad, hess) / (grad, hess, hvp)"
    raise TypeError(f"f must be {what} of callables; got {type(f).__name__}")


def _as_point(x: Any) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"x must be a 1-D parameter vector; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x must be finite")
    return arr


def float32_note(t: _Target, method: str) -> list[str]:
    """Why differences of a float32 kernel may fail a correct one (a note for the report)."""
    if not t.float32 or method not in ("central", "richardson"):
        return []
    return [f"this kernel computes in float32: its value's rounding (~1e-7 relative) swamps "
            f"the differences of method={method!r}; method='exact' (the default for float32 "
            "kernels) checks it"]


def _resolve_method(method: str, t: _Target, *, hessian: bool) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    residual = getattr(t.kernel, "kind", None) == "residual"
    if method == "auto":
        if t.float32 or (hessian and residual):  # rounding noise / Gauss-Newton: the oracle
            return "exact"
        return "complex" if t.analytic and not hessian else "richardson"
    if hessian and residual and method != "exact":
        raise ValueError(
            f"method={method!r}: a residual kernel's Hessian is the Gauss-Newton JᵀJ (what "
            "least squares uses), not the second derivative of ½‖r‖² that differences of the "
            "gradient give (they differ by Σ rᵢ∇²rᵢ); method='exact' (the default here) "
            "checks JᵀJ, and check_grad checks J through Jᵀr"
        )
    if method == "complex":
        if hasattr(t.kernel, "no_complex_step"):
            why = t.kernel.no_complex_step()
        elif t.kernel is not None and not t.analytic:  # a duck-typed kernel
            why = "it has no analytic value_complex; use method='richardson'"
        else:
            why = None
        if why is not None:
            raise ValueError(f"method='complex': {why}")
        if t.fun_complex is None and t.fun is None:
            raise ValueError("method='complex' needs a value function; pass a Kernel")
    if method == "exact" and t.kernel is None:
        raise ValueError("method='exact' needs a Kernel (it differentiates f.expr with SymPy)")
    return method
