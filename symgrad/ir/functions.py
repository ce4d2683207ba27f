"""Functions with exact derivative rules and numerically stable printed forms.

Each is a SymPy ``Function`` so it differentiates symbolically; the printer gives each a stable
scalar form (``sigmoid`` never overflows ``exp``, ``softplus`` uses ``log1p``, ``logsumexp``
subtracts the max). ``SUPPORTED`` lists every function class the code generator can print.

>>> import sympy as sp
>>> x = sp.Symbol("x", real=True)
>>> sp.diff(softplus(x), x)
sigmoid(x)
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from ..lang.ops import apply, scalar_args
from ..lang.ops import log_softmax as array_log_softmax
from ..lang.ops import logsumexp as array_lse
from ..lang.ops import softmax as array_softmax
from .graph import Node
from .minmax import Max2, Min2

__all__ = [
    "ANALYTIC",
    "SUPPORTED",
    "expm1",
    "log1p",
    "log_softmax",
    "logsumexp",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
]


class _Elementwise(sp.Function):
    """A one-argument function with a closed form ``_closed(x)``: taken at numbers, by
    ``evalf`` and by ``rewrite``; applied to an array expression, it maps over the elements."""

    is_real = True

    def __new__(cls, *args, **kw):
        args = scalar_args(f"sg.{cls.__name__}", args)
        if any(isinstance(a, Node) for a in args):
            return apply(cls, *args)
        return super().__new__(cls, *args, **kw)

    @classmethod
    def eval(cls, x):
        return cls._closed(x) if x.is_Number else None

    def _eval_evalf(self, prec):
        return self._closed(self.args[0])._eval_evalf(prec)

    def _rewrite_closed(self, x, **kw):
        return self._closed(x)


class relu(_Elementwise):
    """``max(x, 0)``; its derivative is ``Heaviside(x, 0)`` (relu'(0) = 0 by default)."""

    nargs = 1
    _closed = staticmethod(lambda x: sp.Max(x, 0))
    _eval_rewrite_as_Max = _Elementwise._rewrite_closed

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)


class sigmoid(_Elementwise):
    """The logistic function ``1 / (1 + exp(-x))``."""

    nargs = 1
    _closed = staticmethod(lambda x: 1 / (1 + sp.exp(-x)))
    _eval_rewrite_as_exp = _Elementwise._rewrite_closed

    def fdiff(self, argindex=1):
        # not self * (1 - self): 1 - s cancels where s rounds to 1 (x = 30: 1e-3 relative
        # error; x >= 37: 0 instead of 4e-17); sigmoid(-x) is 1 - s to full precision
        return self * sigmoid(-self.args[0])


class softplus(_Elementwise):
    """``log(1 + exp(x))``, printed as ``max(x, 0) + log1p(exp(-|x|))``."""

    nargs = 1
    _closed = staticmethod(lambda x: sp.log(1 + sp.exp(x)))
    _eval_rewrite_as_log = _Elementwise._rewrite_closed

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class logsumexp(sp.Function):
    """``log(sum_k exp(x_k))``, printed with the max subtracted; d/dx_k is ``softmax_k``.

    On one array, ``logsumexp(z, axis=-1)`` reduces along a per-sample axis.
    """

    is_real = True

    def __new__(cls, *args, axis=-1, **kw):
        if len(args) == 1 and isinstance(args[0], Node):
            return array_lse(args[0], axis)
        if len(args) == 1 and isinstance(args[0], list | tuple | sp.MatrixBase):
            args = tuple(args[0])  # logsumexp([a, b]) is logsumexp(a, b), as softmax takes
        return super().__new__(cls, *scalar_args("sg.logsumexp", args), **kw)

    @classmethod
    def eval(cls, *args):
        if len(args) == 0:
            raise TypeError("logsumexp needs at least one argument")
        if len(args) == 1:
            return args[0]
        return None

    def fdiff(self, argindex=1):
        return sp.exp(self.args[argindex - 1] - self)

    _closed = staticmethod(lambda *a: sp.log(sp.Add(*[sp.exp(x) for x in a])))

    def _eval_rewrite_as_log(self, *args, **kw):
        return self._closed(*args)

    def _eval_evalf(self, prec):
        return self._closed(*self.args)._eval_evalf(prec)


def softmax(z: Sequence, axis: int = -1) -> list[sp.Expr]:
    """Softmax components ``exp(z_k - logsumexp(z))`` of a sequence or Matrix of expressions
    (of an array: along ``axis``)."""
    if isinstance(z, Node):
        return array_softmax(z, axis)
    z = _components(z, "softmax")
    lse = logsumexp(*z)
    return [sp.exp(zk - lse) for zk in z]


def log_softmax(z: Sequence, axis: int = -1) -> list[sp.Expr]:
    """Log-softmax components ``z_k - logsumexp(z)``: stable, no ``log(exp(.))`` (of an
    array: along ``axis``)."""
    if isinstance(z, Node):
        return array_log_softmax(z, axis)
    z = _components(z, "log_softmax")
    lse = logsumexp(*z)
    return [zk - lse for zk in z]


def _components(z, what: str) -> list[sp.Expr]:
    """The expressions of a list, tuple or Matrix ``z`` (a clear TypeError for anything else)."""
    if not isinstance(z, list | tuple | sp.MatrixBase):
        raise TypeError(f"{what} takes the scores as a list, tuple or Matrix of expressions, or "
                        f"an array expression (sg.params/sg.data with shape=), got "
                        f"{type(z).__name__} {z!r}")
    return list(scalar_args(f"sg.{what}", tuple(z)))


#: Functions without kinks: a loss made only of these (and arithmetic) is complex-step safe.
ANALYTIC: frozenset[type] = frozenset({
    sp.exp, sp.log, log1p, expm1, sp.sin, sp.cos, sp.tan, sp.tanh, sp.sinh, sp.cosh,
    sp.asin, sp.acos, sp.atan, sp.erf, sigmoid, softplus, logsumexp,
})

#: Every function class the printer can emit (others are named in an error, never guessed).
SUPPORTED: frozenset[type] = ANALYTIC | frozenset({
    sp.atan2, sp.Abs, sp.sign, sp.Min, sp.Max, sp.Piecewise, sp.Heaviside, sp.floor,
    sp.ceiling, relu, sp.DiracDelta, Max2, Min2,
})
