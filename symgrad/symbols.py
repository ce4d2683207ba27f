"""The language losses are written in: parameters, data columns, reductions.

Parameters and data columns are ordinary real SymPy symbols of two marker subclasses, so every
SymPy operation works on them and later stages can tell them apart by type.

>>> import symgrad as sg
>>> a, b = sg.params("a b")
>>> t, y = sg.data("t y")
>>> loss = sg.mean((a*t + b - y)**2)
>>> sorted(str(s) for s in loss.free_symbols)
['a', 'b', 't', 'y']
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence

import sympy as sp

from .arrays import ops as array_ops
from .arrays.graph import Leaf, N, Node

__all__ = [
    "Data",
    "DataVector",
    "Index",
    "IndexedSum",
    "Mean",
    "Param",
    "ParamVector",
    "Reduction",
    "Sum",
    "as_expr",
    "data",
    "index",
    "mean",
    "normalize_name",
    "params",
    "sum",
]

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
        _ORDER[normalize_name(name)] = next(_counter)
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


def _names(names: str | Sequence[str]) -> list[str]:
    """The declared names, NFKC-normalised (as Python normalises identifiers) and checked."""
    if isinstance(names, str):  # SymPy's syntax: 'a b', 'a, b', ranges 'x0:3'
        raw = [s.name for s in sp.symbols(names, seq=True)]
    else:
        try:
            raw = list(names)
        except TypeError:
            raise TypeError(f"names must be a string like 'a b c' or a list of strings, "
                            f"got {type(names).__name__}") from None
    if not raw:
        raise ValueError("no names given: pass e.g. 'a b c'")
    out = []
    for n in raw:
        if not isinstance(n, str):
            raise TypeError(f"names must be strings, got {type(n).__name__} {n!r}")
        m = normalize_name(n)
        if not m.isidentifier():
            raise ValueError(f"{n!r} is not a valid name: use letters, digits and _")
        if m in out:
            same = f" ({n!r} reads as {m!r} in Python)" if m != n else ""
            raise ValueError(f"the name {m!r} is declared twice in one call{same}")
        out.append(m)
    return out


#: Keyword arguments of the Kernel methods: a data column cannot share their names.
RESERVED_COLUMNS = frozenset({"out", "batch"})


def _element_name(base: str, idx: tuple[int, ...]) -> str:
    return f"{base}[{','.join(map(str, idx))}]"


def params(names: str | Sequence[str], shape: tuple | None = None, indexed: bool = False):
    """Declare parameters: one ``Param`` per name, or a Matrix of them with ``shape``.

    ``params("x1 x2")`` returns a tuple of symbols (a single symbol for one name).
    ``params("W", shape=(2, 3))`` returns one array parameter of that shape (it stays one array
    in the generated code, whatever its size; ``W[0, 2]`` is one element).
    ``params("x", indexed=True)`` returns a :class:`ParamVector` of call-time length ``n`` that
    :func:`sum` loops over (``x[i]``, ``x[i+1]``...).

    >>> x1, x2 = params("x1 x2")
    >>> params("W", shape=(2, 3)).shape
    (2, 3)
    """
    ns = _names(names)
    if indexed:
        if len(ns) != 1:
            raise ValueError("indexed=True declares one vector at a time")
        return ParamVector(ns[0])
    if shape is None:
        syms = tuple(Param.declare(n) for n in ns)
        return syms[0] if len(syms) == 1 else syms
    shape = _check_shape(shape)
    arrays = []
    for n in ns:
        _ORDER[n] = next(_counter)
        arrays.append(Leaf("param", n, shape))
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise ValueError(f"shape must be a tuple of positive ints such as (128, 784), "
                         f"got {shape!r}")
    return shape


def data(names: str | Sequence[str], shape: tuple | None = None, indexed: bool = False,
         dtype: type | str | None = None, samples: bool = True):
    """Declare data columns.

    ``data("t y")`` gives per-sample 1-D columns (one value per sample, reduced by
    :func:`mean`/:func:`sum`); ``data("x", shape=(k,))`` gives a per-sample array of shape
    ``(k,)`` read from an ``(N, k)`` array passed as ``x=...``. ``data("y", indexed=True)`` gives a
    :class:`DataVector` read element-wise (``y[i]``, ``y[i+1]``) inside ``sum(term, (i, lo, hi))``
    next to parameter vectors; several names give a tuple.

    ``data("f", shape=(64, 64), samples=False)`` is one whole array (an image, a target
    matrix), not one row per sample. ``data("i", dtype=int)`` is an integer column whose values
    pick rows of parameter arrays per sample (``U[i]``: a gather; the gradient adds rows back).

    >>> t, y = data("t y")
    >>> data("x", shape=(2,)).shape
    ('N', 2)
    >>> w = data("w", indexed=True); i = index("i")
    >>> w[i + 1]
    w[i + 1]
    """
    ns = _names(names)
    clash = sorted(RESERVED_COLUMNS.intersection(ns))
    if clash:
        raise ValueError(f"'{clash[0]}' cannot name a data column: it is a keyword of the "
                         "kernel methods (f.value(x, out=..., batch=...)); choose another name")
    if dtype is not None:
        if dtype not in (int, "int", "int64") or shape is not None or indexed:
            raise ValueError("dtype=int declares integer per-sample columns that pick rows of "
                             "parameter arrays (U[i]); give no shape= or indexed=")
        cols = tuple(Leaf("index", n, (N,)) for n in ns)
        return cols[0] if len(cols) == 1 else cols
    if indexed:
        if shape is not None:
            raise ValueError("indexed=True columns are 1-D (one value per element): drop shape=")
        vecs = tuple(DataVector(n) for n in ns)
        return vecs[0] if len(vecs) == 1 else vecs
    if shape is None:
        syms = tuple(Data(n, n) for n in ns)
        return syms[0] if len(syms) == 1 else syms
    shape = _check_shape(shape)
    arrays = tuple(Leaf("data", n, (N, *shape) if samples else shape) for n in ns)
    return arrays[0] if len(arrays) == 1 else arrays


def index(names: str | Sequence[str]):
    """Declare integer summation indices for :func:`sum` over parameter vectors.

    >>> i = index("i")
    >>> i.is_integer
    True
    """
    syms = tuple(Index(n) for n in _names(names))
    return syms[0] if len(syms) == 1 else syms


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


def _data_symbols(e: sp.Basic) -> set:
    return {s for s in e.free_symbols if isinstance(s, Data)}


def mean(e, axis=None) -> sp.Expr:
    """The mean over samples of a per-sample expression ``e`` in parameters and data columns.

    >>> a = params("a"); t = data("t")
    >>> mean((a*t)**2).args[0] == a**2*t**2
    True

    On arrays, ``axis`` names per-sample axes; without it the mean runs over every element and
    every sample.
    """
    if _is_array(e):
        return array_ops.mean(e, axis)
    if axis is not None:
        raise TypeError("axis= applies to array expressions")
    return Mean(_scalar(e, "mean"))


def sum(e, limits: tuple | None = None, *, axis=None) -> sp.Expr:
    """Sum over samples, or over an index range when ``limits=(i, lo, hi)`` is given.

    With limits, ``i`` runs over ``lo <= i < hi`` and the term reads parameter vectors
    (``x[i]``, ``x[i+1]``), element-wise data columns (``y[i]``, from ``data("y", indexed=True)``)
    and scalar parameters; ``hi`` is written with a call-time length such as ``x.length``.

    >>> x = params("x", indexed=True); i = index("i")
    >>> sum((x[i+1] - x[i])**2, (i, 0, x.length - 1))
    IndexedSum((x[i + 1] - x[i])**2, i, 0, len_x - 1)
    """
    if _is_array(e):
        if limits is not None:
            raise TypeError("index limits do not apply to arrays: use axis=")
        return array_ops.sum_(e, axis)
    if axis is not None:
        raise TypeError("axis= applies to array expressions")
    e = _scalar(e, "sum")
    if limits is None:
        return Sum(e)
    i, lo, hi = limits
    if not isinstance(i, Index):
        raise TypeError("the summation index must come from sg.index('i')")
    return IndexedSum(e, i, as_expr(lo, "sg.sum: the lower limit"),
                      as_expr(hi, "sg.sum: the upper limit"))


def as_expr(value, what: str) -> sp.Basic:
    """``value`` as a SymPy object without evaluating any text.

    SymPy's ``sympify`` runs a string through ``eval``; symgrad never does: a string is refused
    (text is parsed only by :func:`symgrad.exprparse.parse_loss`, which executes nothing), and
    so is anything SymPy has no exact conversion for.

    >>> as_expr(2, "x")
    2
    >>> as_expr("a + 1", "sg.mean")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: sg.mean got the string 'a + 1': strings are never evaluated; ...
    """
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise TypeError(f"{what} got the string {shown!r}: strings are never evaluated; build "
                        "the expression from sg.params/sg.data symbols, or parse text with "
                        "symgrad.exprparse.parse_loss")
    try:
        return sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise TypeError(f"{what} takes a SymPy expression or a number, got "
                        f"{type(value).__name__}") from None


def _is_array(e) -> bool:
    """An array expression (a node of the array graph)."""
    return isinstance(e, Node)


def _scalar(e, what: str) -> sp.Expr:
    e = as_expr(e, f"sg.{what}")
    if isinstance(e, sp.MatrixBase):
        if e.shape != (1, 1):
            raise TypeError(f"sg.{what} takes a scalar per-sample expression, got a {e.shape} "
                            f"matrix; reduce it first, e.g. sg.{what}(sum(M))")
        e = e[0, 0]
    return e

