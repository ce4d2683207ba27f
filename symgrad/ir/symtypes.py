"""The symbol types losses are made of: parameters, data columns, indices, reductions.

Marker subclasses of SymPy symbols and functions, so every SymPy operation works on them and
later stages tell them apart by type. Users create them with :mod:`symgrad.lang.symbols`
(``sg.params``, ``sg.data``, ``sg.index``, ``sg.mean``, ``sg.sum``); this module imports only
SymPy, so the array language can read them without importing the constructors.

>>> Param("a").is_real, isinstance(Param("a"), sp.Symbol)
(True, True)
"""

from __future__ import annotations

import itertools
import unicodedata

import sympy as sp

__all__ = ["Data", "DataVector", "Index", "IndexedSum", "Mean", "Param", "ParamVector",
           "Reduction", "Sum", "declaration_order", "declare_name", "normalize_name"]

_counter = itertools.count()


#: Declaration order by name. Not an attribute of the symbol: SymPy's symbol cache is an LRU
#: and rebuilds evicted symbols, so equal symbols may be different objects.
_ORDER: dict[str, int] = {}


def normalize_name(name: str) -> str:
    """``name`` as Python reads it in source code (NFKC): ``ｔ`` and ``𝑒`` are ``t`` and ``e``.

    Every declared name goes through this, so a name in the generated module, a keyword
    argument at call time and the symbol's own name are one and the same string.

    >>> normalize_name("\uff54"), normalize_name("\U0001d452")
    ('t', 'e')
    """
    return unicodedata.normalize("NFKC", name) if isinstance(name, str) else name


def declare_name(name: str) -> None:
    """Record ``name`` as declared now (the end of the default packing order)."""
    _ORDER[normalize_name(name)] = next(_counter)


def declaration_order(s) -> int:
    """When the parameter named like ``s`` was last declared (for the default packing order)."""
    return _ORDER.get(s.name, 1 << 62)


class Param(sp.Symbol):
    """A real scalar parameter (a symbol the loss is differentiated with respect to)."""

    def __new__(cls, name: str) -> Param:
        name = normalize_name(name)
        obj = super().__new__(cls, name, real=True)
        _ORDER.setdefault(name, next(_counter))
        return obj

    @classmethod
    def declare(cls, name: str) -> Param:
        """A parameter declared now: (re)declaring a name moves it to the end of the default
        packing order."""
        declare_name(name)
        return cls(name)


class Data(sp.Symbol):
    """One scalar component of a per-sample data column.

    ``column`` is the name of the array passed at call time; ``component`` is ``None`` for a 1-D
    column and the position along axis 1 for a vector column of width ``width``.
    """

    column: str
    component: int | None
    width: int | None

    def __new__(cls, name: str, column: str, component: int | None = None,
                width: int | None = None) -> Data:
        # Not SymPy's symbol cache: the column layout is part of the symbol's identity, so
        # re-declaring "x" with another width makes a different symbol instead of mutating one
        # (re-declaring it with the same layout makes an equal one).
        obj = sp.Symbol.__xnew__(cls, normalize_name(name), real=True)
        obj.column, obj.component, obj.width = normalize_name(column), component, width
        return obj

    def _hashable_content(self):
        # Integers only (-1 for "none"): SymPy orders equal-named symbols by comparing these
        # entries with < and >, which None does not support.
        return (*super()._hashable_content(), self.column,
                -1 if self.component is None else self.component,
                -1 if self.width is None else self.width)

    def __getnewargs_ex__(self):
        return (self.name, self.column, self.component, self.width), {}


class Index(sp.Symbol):
    """An integer summation index for :func:`sum` over a parameter vector."""

    def __new__(cls, name: str) -> Index:
        return super().__new__(cls, normalize_name(name), integer=True)


class _Vector(sp.IndexedBase):
    """An indexed base of call-time length, read element-wise inside :func:`sum`."""

    @property
    def length(self) -> sp.Symbol:
        """The call-time length of this vector, for limits: ``(i, 0, x.length - 1)``."""
        return sp.Symbol(f"len_{self.name}", integer=True, positive=True)


class ParamVector(_Vector):
    """A parameter vector of call-time length, read element-wise as ``x[i]`` inside :func:`sum`."""

    def __new__(cls, name: str) -> ParamVector:
        name = normalize_name(name)
        _ORDER[name] = next(_counter)
        return super().__new__(cls, name, real=True)


class DataVector(_Vector):
    """A data column read element-wise as ``y[i]`` inside :func:`sum` over an index range.

    Unlike a per-sample column it is not reduced over samples: element ``i`` pairs with the
    parameter-vector elements ``x[i]`` of the same term. Its length is that of the array passed.
    """

    def __new__(cls, name: str) -> DataVector:
        return super().__new__(cls, normalize_name(name), real=True)


class Reduction(sp.Function):
    """Base of ``Mean``/``Sum``: an unevaluated reduction of a per-sample expression."""

    nargs = 1
    is_real = True

    def _eval_derivative(self, s):
        return type(self)(sp.diff(self.args[0], s))

    def _sympystr(self, printer):
        return f"{type(self).__name__.lower()}({printer._print(self.args[0])})"

    def _latex(self, printer):
        name = type(self).__name__.lower()
        return rf"\operatorname{{{name}}}\left({printer._print(self.args[0])}\right)"


class Mean(Reduction):
    """``mean_i e(sample i)``."""


class Sum(Reduction):
    """``sum_i e(sample i)``."""


class IndexedSum(sp.Function):
    """``sum_{i=lo}^{hi-1} term(i)`` over a parameter vector; ``hi`` may use ``n``, its length."""

    is_real = True

    def _eval_derivative(self, s):
        term, i, lo, hi = self.args
        return IndexedSum(sp.diff(term, s), i, lo, hi)
