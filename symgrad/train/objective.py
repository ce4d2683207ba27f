"""What ``minimize`` may be given, decided by the protocol, never by kernel classes.

The loops tell objectives apart by their ``kind`` attribute (``"scalar" | "array" |
"residual" | "model"``, see :mod:`symgrad.runtime.scalar`) and documented attributes:

- a **compiled loss** (``kind`` ``"scalar"`` or ``"array"``, with ``jit.value_and_grad`` and
  ``data_args``): the loops call its serial ``f.jit.value_and_grad(x, g, *f.data_args(data))``;
  the compiled loop can run it. Its bound form (``f.bind(**data)``: ``kernel`` and ``args``)
  likewise.
- any other object with a ``value_and_grad(x, **data) -> (value, grad)`` method (a residual
  kernel's ½‖r‖², a Dask-bound kernel, a user's class): the Python loop calls that method.
- a plain callable ``f(x, **data) -> (value, grad)``: the Python loop calls it.

>>> class Quadratic:                       # any object with value_and_grad
...     def value_and_grad(self, x):
...         return float(x @ x), 2 * x
>>> how(Quadratic()), how(lambda x: (0.0, x))
('method', 'callable')
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LOSS_KINDS", "arith_dtype", "how", "is_bound", "is_kernel", "kernel_dtype", "own_hvp",
           "per_sample"]

#: Kinds whose compiled ``jit.value_and_grad`` the loops call directly.
LOSS_KINDS = ("scalar", "array")


def is_kernel(f: Any) -> bool:
    """A compiled loss: ``kind`` in :data:`LOSS_KINDS`, with ``jit.value_and_grad`` and
    ``data_args``."""
    return (getattr(f, "kind", None) in LOSS_KINDS and hasattr(f, "data_args")
            and hasattr(getattr(f, "jit", None), "value_and_grad"))


def is_bound(f: Any) -> bool:
    """A compiled loss bound to its data (``f.bind(**data)``): ``kernel`` and ``args``."""
    return hasattr(f, "args") and is_kernel(getattr(f, "kernel", None))


def how(f: Any) -> str:
    """How the loops evaluate ``f``: ``"kernel"`` (its compiled function), ``"method"`` (its
    ``value_and_grad``) or ``"callable"``; TypeError, in the user's terms, for anything else."""
    if is_kernel(f) or is_bound(f):
        return "kernel"
    kind = getattr(f, "kind", None)
    if callable(getattr(f, "value_and_grad", None)):
        return "method"
    if kind == "model":
        raise TypeError("f is a compiled model (its outputs, not a loss): compile a loss of "
                        "its outputs (e.g. sg.mean((model - y)**2)) and minimize that")
    if kind is not None:
        raise TypeError(f"f is a {kind!r} kernel without value_and_grad(x, **data): minimize "
                        "needs a loss value and its gradient")
    if callable(f):
        return "callable"
    raise TypeError("f must be a symgrad Kernel (sg.compile(loss)), an object with "
                    "value_and_grad(x, **data) -> (value, grad), or a callable "
                    f"f(x, **data) -> (value, grad); got {type(f).__name__}")


def own_hvp(f: Any) -> bool:
    """Whether ``f`` brings its exact Hessian-vector product (a compiled loss's ``jit.hvp``,
    or an ``hvp`` method beside ``value_and_grad``), so Newton needs no ``hvp=``."""
    if is_bound(f):
        f = f.kernel
    if is_kernel(f):
        return hasattr(f.jit, "hvp")
    return callable(getattr(f, "value_and_grad", None)) and callable(getattr(f, "hvp", None))


def kernel_dtype(f: Any) -> np.dtype:
    """The floating type a compiled loss computes in (``x`` and ``g`` of its ``jit`` calls):
    its ``dtype`` (array losses: float64 or float32), else float64."""
    return np.dtype(getattr(f, "dtype", np.float64))


def arith_dtype(f: Any) -> np.dtype:
    """The type a compiled loss rounds ``x`` to: :func:`kernel_dtype`, or a scalar or fused
    kernel's ``data_dtype`` (float32: x stays float64 but its sample loop rounds it)."""
    dt = kernel_dtype(f)
    return dt if dt != np.float64 else np.dtype(getattr(f, "data_dtype", np.float64))


def per_sample(f: Any) -> frozenset[str] | None:
    """The names of ``f``'s per-sample data (rows are samples; batches pick them), or None
    when ``f`` does not say (then every data column is per sample)."""
    names = getattr(f, "sampled", None)
    if names is None:
        names = getattr(f, "data_names", None)
    return None if names is None else frozenset(names)
