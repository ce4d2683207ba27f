"""Standard data-driven losses, written in the loss language (``sg.mean`` over samples).

Each function returns a plain SymPy expression, so losses compose with ``+``, weights and
parameter-only penalties, and compile with ``sg.compile`` to one fused pass over the samples.
Predictions are per-sample expressions in parameters and data columns; targets are data columns
(``sg.data``). Vector outputs are lists or column Matrices of per-sample expressions.

>>> import numpy as np, symgrad as sg
>>> from symgrad import losses
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> loss = losses.mse(a*t + b, y) + losses.l2(a, b, weight=0.1)
>>> f = sg.compile(loss)
>>> f.value([1.0, 0.0], t=np.array([1.0, 2.0]), y=np.array([1.0, 4.0]))
2.1
"""

from __future__ import annotations

import sympy as sp

from ..ir.functions import log_softmax, softplus
from ..ir.graph import Node
from . import ops as A
from .symbols import Data, Param, as_expr, mean

__all__ = ["binary_cross_entropy", "cross_entropy", "huber", "l2", "mae", "mse", "rmse"]


def _vec(e, what: str, any_shape: bool = False) -> list[sp.Expr]:
    """A scalar, list/tuple or Matrix of per-sample expressions -> flat list of expressions."""
    if isinstance(e, sp.MatrixBase):
        if 1 not in e.shape and not any_shape:
            raise TypeError(f"{what} must be a scalar, a list or a column Matrix, "
                            f"got a {e.shape} matrix")
        out = list(e)
    elif isinstance(e, list | tuple):
        out = [x for item in e for x in _vec(item, what, any_shape)]
    else:
        try:
            out = [sp.sympify(e, strict=True)]
        except (sp.SympifyError, TypeError) as exc:
            raise TypeError(f"{what} must be a SymPy expression, got {type(e).__name__}") from exc
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def _arrays(*args) -> bool:
    """Array operands: the loss is written on whole arrays (mean over samples and elements)."""
    return any(isinstance(a, Node) for a in args)


def _pointwise(h, pred, target, name: str) -> sp.Expr:
    """``h(pred, target)`` averaged over samples and over the components of each sample (the
    elements of arrays, or the entries of lists/Matrices of per-sample expressions)."""
    if _arrays(pred, target):
        return A.mean(A.apply(h, pred, target))
    p, t = _vec(pred, "pred"), _vec(target, "target")
    if len(p) != len(t):
        raise ValueError(f"{name}: pred has {len(p)} components but target has {len(t)}")
    terms = [h(a, b) for a, b in zip(p, t, strict=True)]
    return mean(sp.Add(*terms) / len(terms)) if len(terms) > 1 else mean(terms[0])


def mse(pred, target) -> sp.Expr:
    """Mean squared error ``mean_i mean_k (pred_ik - target_ik)**2``.

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> a, b = sg.params("a b"); t, y = sg.data("t y")
    >>> losses.mse(a*t + b, y) == sg.mean((a*t + b - y)**2)
    True
    """
    return _pointwise(lambda p, t: (p - t) ** 2, pred, target, "mse")


def rmse(pred, target) -> sp.Expr:
    """Root mean squared error ``sqrt(mse(pred, target))``.

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> a = sg.params("a"); t, y = sg.data("t y")
    >>> import sympy as sp
    >>> losses.rmse(a*t, y) == sp.sqrt(sg.mean((a*t - y)**2))
    True
    """
    m = mse(pred, target)
    return A.apply(sp.sqrt, m) if isinstance(m, Node) else sp.sqrt(m)


def mae(pred, target) -> sp.Expr:
    """Mean absolute error ``mean_i mean_k |pred_ik - target_ik|`` (d|r|/dr at 0 follows the
    kink policy: 0 by default).

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> a = sg.params("a"); t, y = sg.data("t y")
    >>> losses.mae(a*t, y) == sg.mean(abs(a*t - y))
    True
    """
    return _pointwise(lambda p, t: sp.Abs(p - t), pred, target, "mae")


def huber(pred, target, delta=1.0) -> sp.Expr:
    """Huber loss: ``r**2/2`` for ``|r| <= delta``, ``delta*(|r| - delta/2)`` beyond, with
    ``r = pred - target``; averaged like :func:`mse`. Continuously differentiable.

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> a = sg.params("a"); t, y = sg.data("t y")
    >>> h = losses.huber(a*t, y, delta=2).args[0]
    >>> [h.subs({a: 1, t: r, y: 0}) for r in (1, 3, -3)]
    [1/2, 4, 4]
    """
    d = as_expr(delta, "huber: delta")  # never sympify user text: it would be evaluated
    if d.is_number and not (d.is_real and d.is_positive):
        raise ValueError(f"huber: delta must be positive, got {delta!r}")
    def h(p, t):
        r = p - t
        return sp.Piecewise((d * (r - d / 2), r > d), (-d * (r + d / 2), r < -d),
                            (r**2 / 2, True))

    return _pointwise(h, pred, target, "huber")


def cross_entropy(logits, onehot) -> sp.Expr:
    """Softmax cross-entropy from logits: ``mean_i sum_k -y_ik * log_softmax(z_i)_k`` where
    ``log_softmax(z)_k = z_k - logsumexp(z)`` (stable: the max is subtracted, no ``log(exp)``).

    ``logits`` are the per-sample class scores (a list or Matrix of expressions); ``onehot`` the
    per-sample target probabilities, usually ``sg.data("Y", shape=(K,))`` filled with one-hot rows.

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> w = sg.params("w"); x, y0, y1 = sg.data("x y0 y1")
    >>> z = [w*x, -w*x]
    >>> lse = sg.logsumexp(*z)
    >>> losses.cross_entropy(z, [y0, y1]) == sg.mean(-y0*(z[0] - lse) - y1*(z[1] - lse))
    True

    On arrays (``logits`` of per-sample shape ``(K,)``) it is
    ``sg.mean(-sg.sum(onehot * sg.log_softmax(logits), axis=-1))``.
    """
    if _arrays(logits, onehot):
        return A.mean(-A.sum_(A.apply(lambda a, b: a * b, onehot, A.log_softmax(logits)),
                              axis=-1))
    z, y = _vec(logits, "logits"), _vec(onehot, "onehot")
    if len(z) != len(y):
        raise ValueError(f"cross_entropy: {len(z)} logits but onehot has {len(y)} components")
    if len(z) < 2:
        raise ValueError("cross_entropy needs at least two classes; for one logit use "
                         "binary_cross_entropy")
    return mean(sp.Add(*[-yk * lk for yk, lk in zip(y, log_softmax(z), strict=True)]))


def binary_cross_entropy(logit, target) -> sp.Expr:
    """Binary cross-entropy from a logit ``z`` and a target ``y`` in [0, 1]:
    ``mean_i softplus(z_i) - y_i*z_i``, which equals
    ``-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` without overflow for large ``|z|``.

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> w = sg.params("w"); x, y = sg.data("x y")
    >>> losses.binary_cross_entropy(w*x, y) == sg.mean(sg.softplus(w*x) - y*w*x)
    True
    """
    return _pointwise(lambda z, t: softplus(z) - t * z, logit, target, "binary_cross_entropy")


def l2(*params, weight=1.0) -> sp.Expr:
    """L2 penalty ``weight * sum_j p_j**2`` over parameters (symbols, lists or Matrices of them).

    A parameter-only term: add it to a data loss (it is not averaged over samples).

    >>> import symgrad as sg
    >>> from symgrad import losses
    >>> a, b = sg.params("a b")
    >>> losses.l2(a, b, weight=0.5)
    0.5*a**2 + 0.5*b**2

    Array parameters contribute the sum of their squared elements.
    """
    if _arrays(*params):
        total = sp.S.Zero
        for p in params:
            total = total + (A.sum_(A.apply(lambda a: a**2, p)) if isinstance(p, Node) else
                             as_expr(p, "l2 argument") ** 2)
        w = as_expr(weight, "l2: weight")  # never sympify user text: it would be evaluated
        return A.apply(lambda t: w * t, total)
    flat = [e for p in params for e in _vec(p, "l2 argument", any_shape=True)] if params else []
    if not flat:
        raise ValueError("l2 needs at least one parameter, e.g. losses.l2(a, b, weight=1e-3)")
    for p in flat:
        syms = p.free_symbols
        if any(isinstance(s, Data) for s in syms):
            raise TypeError(f"l2 is a parameter-only penalty, but {p} contains a data column; "
                            "use mse/mean for per-sample terms")
        if not any(isinstance(s, Param) for s in syms):
            raise TypeError(f"l2 takes parameters (sg.params), got {p}")
    return as_expr(weight, "l2: weight") * sp.Add(*[p**2 for p in flat])
