"""The loss, gradient and HVP of a planned run as plain functions of float64 ``x``.

Every loop (first-order in Python, L-BFGS, Newton) evaluates ``f`` through these, by how the
plan says ``f`` is called (:func:`symgrad.train.objective.how`):

- a compiled loss: its serial ``f.jit`` functions on the validated data (the compiled loop
  calls the same ones). A kernel computing in float32 gets ``x`` rounded to float32 and its
  gradient is widened to float64: the optimizer state stays float64 in both loops.
- an object with ``value_and_grad``: that method (``hvp`` for Newton);
- a plain callable: ``f(x, **data)``.

Mini-batches: a scalar kernel gets the batch's sample indices, an array kernel the batch's
rows of its per-sample arrays (:func:`gathered`), anything else its per-sample columns'
rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .plan import Plan
from .second_order import FunAndGrad

__all__ = ["batch_evaluator", "direct_batches", "full_evaluator", "gathered", "hvp_evaluator"]


def direct_batches(p: Plan) -> bool:
    """A scalar kernel with per-sample data: its compiled function's last argument is the
    sample indices, so a batch is an index array (the columns were validated once)."""
    return p.kernel and p.f.kind == "scalar" and len(p.jit_args) > 0


def gathered(p: Plan) -> tuple[bool, ...]:
    """For an array kernel, which of its jit arguments ``(dims, *arrays)`` a batch picks rows
    of (the per-sample arrays); ``()`` for other objectives."""
    if not (p.kernel and p.f.kind == "array"):
        return ()
    return (False, *(name in p.per_sample for name in p.f.data_names))


def _kernel_call(vg: Any, dtype: np.dtype) -> Callable[..., tuple[float, np.ndarray]]:
    """``(x, *args) -> (loss, grad)`` through a compiled ``value_and_grad`` taking ``dtype``."""
    if dtype == np.float64:
        def call(x: np.ndarray, *args: Any) -> tuple[float, np.ndarray]:
            g = np.empty_like(x)
            return float(vg(x, g, *args)), g

        return call

    def call_cast(x: np.ndarray, *args: Any) -> tuple[float, np.ndarray]:
        g = np.empty(x.shape, dtype)
        return float(vg(x.astype(dtype), g, *args)), g.astype(np.float64)

    return call_cast


def _pair(out: Any, x: np.ndarray, who: str) -> tuple[float, np.ndarray]:
    try:
        value, grad = out
    except (TypeError, ValueError):
        raise TypeError(f"{who} must return (value, grad), got {type(out).__name__}") from None
    grad = np.array(grad, dtype=np.float64)
    if grad.shape != x.shape:
        raise ValueError(f"{who} returned a gradient of shape {grad.shape}, expected {x.shape}")
    if np.ndim(value) != 0:
        raise ValueError(f"{who} returned a value of shape {np.shape(value)}: the loss must be "
                         "one number (reduce it, e.g. with a sum or mean)")
    return float(value), grad


def _plain(p: Plan) -> Callable[..., tuple[float, np.ndarray]]:
    """``(x, **data) -> (loss, grad)`` for an object's method or a plain callable."""
    if p.how == "method":
        vg = p.f.value_and_grad
        return lambda x, **data: _pair(vg(x, **data), x, "f.value_and_grad(x, **data)")
    f = p.f
    return lambda x, **data: _pair(f(x, **data), x, "f(x, **data)")


def full_evaluator(p: Plan) -> FunAndGrad:
    """``x -> (loss, grad)`` on the full data, a fresh float64 gradient array each call."""
    if p.kernel and p.dtype == np.float64:  # the hot path of the Python loop: one call deep
        vg, args = p.jit_vg, p.jit_args

        def ev(x: np.ndarray) -> tuple[float, np.ndarray]:
            g = np.empty_like(x)
            return float(vg(x, g, *args)), g

        return ev
    if p.kernel:
        call, args = _kernel_call(p.jit_vg, p.dtype), p.jit_args
        return lambda x: call(x, *args)
    plain, data = _plain(p), dict(p.data or {})
    return lambda x: plain(x, **data)


def batch_evaluator(p: Plan) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """``(x, idx) -> (loss, grad)`` on the samples ``idx``."""
    if p.kernel:
        call = _kernel_call(p.jit_vg, p.dtype)
        if direct_batches(p):
            vg, cols = p.jit_vg, p.jit_args[:-1]  # the validated columns; the idx slot is last
            if p.dtype != np.float64:
                return lambda x, idx: call(x, *cols, idx)

            def ev_direct(x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
                g = np.empty_like(x)
                return float(vg(x, g, *cols, idx)), g

            return ev_direct
        pick = gathered(p)  # an array kernel: the batch's rows, contiguous for BLAS
        args = p.jit_args
        return lambda x, idx: call(x, *(a[idx] if g else a for a, g in zip(args, pick,
                                                                           strict=True)))
    plain, data, per = _plain(p), dict(p.data or {}), p.per_sample

    def ev(x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
        return plain(x, **{k: v[idx] if k in per else v for k, v in data.items()})

    return ev


def hvp_evaluator(p: Plan, hvp: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(x, v) -> H v`` on the full data: a compiled loss's serial HVP, the object's ``hvp``
    method, or the user's ``hvp(x, v, **data)``."""
    if p.kernel:
        jit_hvp, args, dt = p.f.jit.hvp, p.jit_args, p.dtype

        def kernel_hvp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
            out = np.empty(x.shape, dt)
            jit_hvp(np.ascontiguousarray(x, dtype=dt), np.ascontiguousarray(v, dtype=dt), out,
                    *args)
            return out if dt == np.float64 else out.astype(np.float64)

        return kernel_hvp
    fn = p.f.hvp if hvp is None else hvp
    data = dict(p.data or {})

    def plain_hvp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        hv = np.array(fn(x, v, **data), dtype=np.float64)
        if hv.shape != x.shape:
            raise ValueError(f"hvp returned shape {hv.shape}, expected {x.shape}")
        return hv

    return plain_hvp
