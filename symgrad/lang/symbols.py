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

from collections.abc import Sequence

import sympy as sp

from ..ir.graph import Leaf, N, Node
from ..ir.symtypes import (
    Data,
    DataVector,
    Index,
    IndexedSum,
    Mean,
    Param,
    ParamVector,
    Reduction,
    Sum,
    declaration_order,
    declare_name,
    normalize_name,
)
from . import ops as array_ops

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
    "declaration_order",
    "index",
    "mean",
    "normalize_name",
    "params",
    "sum",
]

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


def _one_or_tuple(items):
    """One declared object for one name, else a tuple of them (as ``sp.symbols``)."""
    items = tuple(items)
    return items[0] if len(items) == 1 else items


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
        return _one_or_tuple(Param.declare(n) for n in ns)
    shape = _check_shape(shape)
    for n in ns:
        declare_name(n)
    return _one_or_tuple(Leaf("param", n, shape) for n in ns)


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
        return _one_or_tuple(Leaf("index", n, (N,)) for n in ns)
    if indexed:
        if shape is not None:
            raise ValueError("indexed=True columns are 1-D (one value per element): drop shape=")
        return _one_or_tuple(DataVector(n) for n in ns)
    if shape is None:
        return _one_or_tuple(Data(n, n) for n in ns)
    shape = _check_shape(shape)
    return _one_or_tuple(Leaf("data", n, (N, *shape) if samples else shape) for n in ns)


def index(names: str | Sequence[str]):
    """Declare integer summation indices for :func:`sum` over parameter vectors.

    >>> i = index("i")
    >>> i.is_integer
    True
    """
    return _one_or_tuple(Index(n) for n in _names(names))


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
    bounds = []
    for b, what in ((lo, "lower"), (hi, "upper")):
        b = as_expr(b, f"sg.sum: the {what} limit")
        if b.is_integer is not True:  # x.length/2 was truncated toward 0, not lo <= i < hi
            raise ValueError(f"sg.sum: the {what} limit {b} is not a whole number for every "
                             f"length (i runs over lo <= i < hi): write sympy.floor({b}) or "
                             f"sympy.ceiling({b})")
        bounds.append(b)
    return IndexedSum(e, i, *bounds)


def as_expr(value, what: str) -> sp.Basic:
    """``value`` as a SymPy object without evaluating any text.

    SymPy's ``sympify`` runs a string through ``eval``; symgrad never does: a string is refused
    (text is parsed only by :func:`symgrad.lang.parse.parse_loss`, which executes nothing), and
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
                        "symgrad.lang.parse.parse_loss")
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

