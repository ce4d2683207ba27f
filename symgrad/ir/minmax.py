"""Binary max/min that stay binary: the links of the chain ``Max(Max(a, b), c)``.

Every path differentiates an n-ary ``Max``/``Min`` as this chain (the tie rule at each link), so
it lives in a module of its own that imports nothing of symgrad (the array notation and the
function library both use it).

>>> import sympy as sp
>>> a, b, c = sp.symbols("a b c", real=True)
>>> Max2(Max2(a, b), c).args[0]
Max2(a, b)
"""

from __future__ import annotations

import sympy as sp

__all__ = ["Max2", "Min2"]


class _MinMax2(sp.Function):
    """A binary max/min of the straight-line programs (see :mod:`symgrad.ad.derive`).

    SymPy's ``Max`` flattens ``Max(Max(a, b), c)`` back into one n-ary node and re-evaluates it
    (quadratic in its arguments) whenever an expression is rebuilt; this one never does, so a
    chain of them stays a chain and substituting into it stays linear.
    """

    nargs = 2
    is_real = True
    lattice: type = sp.Max

    @classmethod
    def eval(cls, a, b):
        if a == b:
            return a
        if a.is_Number and b.is_Number:
            return cls.lattice(a, b)
        return None

    def _eval_evalf(self, prec):
        return self.lattice(*self.args)._eval_evalf(prec)


class Max2(_MinMax2):
    """``max(a, b)``, kept binary."""

    lattice = sp.Max

    def _eval_rewrite_as_Max(self, a, b, **kw):
        return sp.Max(a, b)


class Min2(_MinMax2):
    """``min(a, b)``, kept binary."""

    lattice = sp.Min

    def _eval_rewrite_as_Min(self, a, b, **kw):
        return sp.Min(a, b)
