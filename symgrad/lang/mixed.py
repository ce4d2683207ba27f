"""A loss that is a SUM of index sums and array terms: :class:`MixedSum`.

An index sum (``sg.sum(term, (i, lo, hi))``, a loop over vectors of call-time length) is a
SymPy expression; an array term is a node of the array graph. They compile on two paths, so they
combine only by ``+``, ``-`` and scaling by a number: the result keeps the two parts apart
(``scalar``: every term with an index sum; ``array``: everything else, a scalar array loss) and
``sg.compile`` builds a :class:`~symgrad.runtime.sum_kernel.SumKernel` of them. A product, a
quotient or a function of an index sum and an array term is refused, naming what was combined.

>>> import symgrad as sg
>>> v = sg.params("v", indexed=True); i = sg.index("i")
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,))
>>> loss = sg.sum((v[i + 1] - v[i])**2, (i, 0, v.length - 1)) + sg.mean((X @ w)**2)
>>> type(loss).__name__, loss.array.shape
('MixedSum', ())
"""

from __future__ import annotations

import numbers

import sympy as sp

from ..ir.graph import Node, ShapeError
from ..ir.symtypes import Index, IndexedSum

__all__ = ["MixedSum", "has_index_sum", "mix", "refuse"]


def has_index_sum(e) -> bool:
    """Whether the SymPy expression ``e`` holds an index sum (or a stray summation index)."""
    return isinstance(e, sp.Basic) and (
        e.has(IndexedSum) or any(isinstance(s, Index) for s in e.free_symbols))


def refuse(what: str, a, b=None) -> ShapeError:
    """The error for combining an index sum and an array term other than by a sum."""
    parts = f"{_show(a)} and {_show(b)}" if b is not None else _show(a)
    return ShapeError(
        f"{what} of {parts} is refused: an index sum (sg.sum(term, (i, lo, hi))) and an array "
        "term compile on two paths, so they combine only as a sum of terms (a + b, a - b, "
        "2.0 * (a + b)); write the loss as index-sum terms plus array terms, e.g. "
        "sg.sum((v[i+1] - v[i])**2, (i, 0, v.length - 1)) + sg.mean((X @ w - y)**2)")


def _show(x) -> str:
    if isinstance(x, MixedSum):
        return "a sum of index sums and array terms"
    if isinstance(x, Node):
        return f"the array term {x!r}"
    if has_index_sum(x):
        return f"the index sum {x}"
    return f"{x}"


def _number(x) -> bool:
    return (isinstance(x, numbers.Real) and not isinstance(x, bool)) or (
        isinstance(x, sp.Basic) and x.is_number and x.is_real is not False)


def mix(scalar: sp.Expr, array: Node) -> MixedSum:
    """``scalar + array``: an expression with index sums plus a scalar array loss."""
    if array.shape != ():
        raise ShapeError(f"an index sum adds to a scalar array loss, but {array!r} has shape "
                         f"{array.shape}: reduce it first with sg.sum(...) or sg.mean(...)")
    return MixedSum(scalar, array)


class MixedSum:
    """``scalar + array``: the index-sum terms (a SymPy expression) and the array terms (a
    scalar node). Compiles with ``sg.compile`` to a kernel of kind ``"sum"``."""

    __slots__ = ("array", "scalar")
    __array_ufunc__ = None  # NumPy defers to the reflected operators

    def __init__(self, scalar: sp.Expr, array: Node) -> None:
        self.scalar, self.array = scalar, array

    def __repr__(self) -> str:
        return f"MixedSum({self.scalar} + {self.array!r})"

    def _add(self, other, sign: int) -> MixedSum:
        if isinstance(other, MixedSum):
            return MixedSum(self.scalar + sign * other.scalar, self.array + sign * other.array)
        if isinstance(other, Node):
            return mix(self.scalar, self.array + sign * other)
        if isinstance(other, sp.Basic | numbers.Number) and not isinstance(other, bool):
            o = sp.sympify(other, strict=True)
            if has_index_sum(o):
                return MixedSum(self.scalar + sign * o, self.array)
            return mix(self.scalar, self.array + sign * o)  # data and sample means: array path
        return NotImplemented

    def __add__(self, other):
        return self._add(other, 1)

    __radd__ = __add__

    def __sub__(self, other):
        return self._add(other, -1)

    def __rsub__(self, other):
        return (-self)._add(other, 1)

    def __neg__(self) -> MixedSum:
        return MixedSum(-self.scalar, -self.array)

    def __pos__(self) -> MixedSum:
        return self

    def __mul__(self, other):
        if _number(other):
            c = sp.sympify(other, strict=True)
            return MixedSum(c * self.scalar, c * self.array)
        raise refuse("the product", self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if _number(other) and sp.sympify(other, strict=True) != 0:
            c = 1 / sp.sympify(other, strict=True)
            return MixedSum(c * self.scalar, c * self.array)
        raise refuse("the quotient", self, other)

    def __rtruediv__(self, other):
        raise refuse("the quotient", other, self)

    def __pow__(self, other):
        raise refuse("the power", self, other)

    def __rpow__(self, other):
        raise refuse("the power", other, self)

    def __matmul__(self, other):
        raise refuse("the matrix product", self, other)

    __rmatmul__ = __matmul__
