"""Reductions of array expressions along per-sample axes, or over everything (samples included).

>>> import symgrad as sg
>>> W = sg.params("W", shape=(3, 2))
>>> sum_(W, axis=1).shape, mean(W).shape
((3,), ())
"""

from __future__ import annotations

import sympy as sp

from ..ir.graph import SAMPLES, N, Node, ShapeError, map_, ph, reduce_

__all__ = ["log_softmax", "logsumexp", "max_", "mean", "softmax", "sum_"]


def _axes(n: Node, axis) -> tuple[int, ...]:
    """Absolute axes of ``n`` to reduce (``None``: all, the sample axis included)."""
    if axis is None:
        return tuple(range(n.ndim))
    off = 1 if n.per_sample else 0
    rank = n.ndim - off
    out = []
    for a in (axis,) if isinstance(axis, int) else tuple(axis):
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for {n!r} ({rank} axes per sample)")
        out.append(a % rank + off)
    return tuple(sorted(set(out)))


def _keep(n: Node, axis) -> tuple[int, ...]:
    red = _axes(n, axis)
    return tuple(k for k in range(n.ndim) if k not in red)


def _not_reduced_twice(n: Node, what: str) -> None:
    """Refuse ``sg.mean(sg.sum(E))``: no axis is left, the samples are reduced already."""
    if n.shape != ():
        return
    stack, seen = [n], set()
    while stack:
        m = stack.pop()
        if m.per_sample:
            raise ShapeError(
                f"sg.{what}({n!r}) without axis=: its argument is already a scalar, its samples "
                "summed or averaged by an inner sg.sum/sg.mean/sg.max without axis= (which runs "
                f"over every element and every sample), so this sg.{what} would not reduce over "
                "the samples (a mean would not divide by N). Reduce the inner per-sample axes "
                "with axis=, e.g. sg.mean(sg.sum(E, axis=-1)), or write the inner reduction "
                "alone")
        if id(m) not in seen:
            seen.add(id(m))
            stack.extend(m.args)


def sum_(e, axis=None) -> Node:
    """Sum over ``axis`` (per-sample axes), or over everything, samples included."""
    n = _node(e, "sum")
    if axis is None:
        _not_reduced_twice(n, "sum")
    return reduce_("sum", n, _keep(n, axis))


def mean(e, axis=None) -> Node:
    """Mean over ``axis`` (per-sample axes), or over everything, samples included."""
    n = _node(e, "mean")
    if axis is None:
        _not_reduced_twice(n, "mean")
    count = sp.Integer(1)
    for k in _axes(n, axis):
        count *= SAMPLES if n.shape[k] == N else n.shape[k]
    r = reduce_("sum", n, _keep(n, axis))
    return map_(ph(0) / count, [(r, tuple(range(r.ndim)))], r.shape)


def max_(e, axis=None) -> Node:
    """Maximum over ``axis`` (a tie shares the derivative equally)."""
    n = _node(e, "max")
    return reduce_("max", n, _keep(n, axis))


def logsumexp(e, axis=-1) -> Node:
    """``log(sum(exp(e)))`` over ``axis``, computed with the maximum subtracted."""
    n = _node(e, "logsumexp")
    return reduce_("lse", n, _keep(n, axis))


def _of_shifted(e, axis, what: str, fn) -> Node:
    """``fn(e - logsumexp(e))`` element by element, the logsumexp along ``axis`` broadcast."""
    n = _node(e, what)
    return map_(fn(ph(0) - ph(1)),
                [(n, tuple(range(n.ndim))), (logsumexp(n, axis), _keep(n, axis))], n.shape)


def log_softmax(e, axis=-1) -> Node:
    """``e - logsumexp(e)`` along ``axis``: stable, no ``log(exp(.))``."""
    return _of_shifted(e, axis, "log_softmax", lambda d: d)


def softmax(e, axis=-1) -> Node:
    """``exp(e - logsumexp(e))`` along ``axis``."""
    return _of_shifted(e, axis, "softmax", sp.exp)


def _node(e, what: str) -> Node:
    if not isinstance(e, Node):
        raise TypeError(f"{what} takes an array expression, got {type(e).__name__}")
    return e
