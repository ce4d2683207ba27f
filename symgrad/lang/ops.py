"""Array notation: operators, broadcasting, matrix products, reductions and element-wise functions.

Shapes are written per sample, as the user thinks of them: ``sg.data("X", shape=(784,))`` is one
784-vector per sample (an ``(N, 784)`` array at call time), and ``W @ X`` with
``W`` of shape ``(128, 784)`` is one 128-vector per sample. Per-sample axes broadcast from the
right as in NumPy (a bias ``b`` of shape ``(128,)`` adds to every sample); the sample axis is
always axis 0 and is only reduced by ``sg.mean``/``sg.sum``.

>>> import symgrad as sg
>>> W = sg.params("W", shape=(3, 2)); b = sg.params("b", shape=(3,))
>>> X = sg.data("X", shape=(2,))
>>> sg.relu(W @ X + b).shape
('N', 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..ir.graph import Leaf, N, Node, ShapeError, contract, map_, ph, reduce_
from ..ir.minmax import Max2, Min2
from ..ir.symtypes import Data, Param, Reduction
from ..ir.symtypes import Sum as SampleSum
from .mixed import MixedSum, has_index_sum, mix, refuse
from .reductions import log_softmax, logsumexp, max_, mean, softmax, sum_
from .windows import gather, window

__all__ = [
    "apply",
    "einsum",
    "elementwise",
    "lift",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max_",
    "mean",
    "softmax",
    "sum_",
]


def _ps(n: Node) -> tuple:
    """The per-sample shape of a node (its shape without the sample axis)."""
    return n.shape[1:] if n.per_sample else n.shape


# -- lifting SymPy scalars into the array graph ----------------------------------------------

def lift(e) -> Node | sp.Expr:
    """A node for ``e``; a SymPy constant stays a constant (it is folded into a Map)."""
    if isinstance(e, Node):
        return e
    if isinstance(e, MixedSum):
        raise refuse("an array operation", e)
    if isinstance(e, sp.MatrixBase | list | tuple):
        what = "SymPy Matrix" if isinstance(e, sp.MatrixBase) else type(e).__name__
        raise TypeError(f"a {what} cannot be mixed with array expressions: declare the array "
                        "with sg.params(name, shape=...) or sg.data(name, shape=...)")
    e = scalar_args("an array operation", (e,))[0]
    if not e.free_symbols:
        return e
    return _lift_scalar(e)


def _lift_scalar(e: sp.Expr) -> Node:
    if has_index_sum(e):
        raise refuse("an array operation", e)
    args: list[Node] = []
    reds: dict = {}
    for r in sorted(e.atoms(Reduction), key=sp.default_sort_key):
        inner = _lift_scalar(r.args[0])
        reds[r] = _arg(args, sum_(inner) if isinstance(r, SampleSum) else mean(inner))
    e = _chains(e.xreplace(reds))
    subs: dict = {}
    for s in sorted(e.free_symbols - set(reds.values()), key=lambda s: s.name):
        if isinstance(s, Param):
            subs[s] = _arg(args, Leaf("param", s.name, ()))
        elif isinstance(s, Data):
            if s.width is not None:
                raise ShapeError(f"data component {s} cannot be mixed with arrays")
            subs[s] = _arg(args, Leaf("data", s.column, (N,)))
        else:
            raise ShapeError(f"symbol '{s}' is neither a parameter nor a data column: declare "
                             "it with sg.params or sg.data")
    e = e.xreplace(subs)
    shape = (N,) if any(n.per_sample for n in args) else ()
    return map_(e, [(n, (0,) if n.per_sample else ()) for n in args], shape)


def _chains(e: sp.Expr) -> sp.Expr:
    """n-ary ``Max``/``Min`` as the chain ``Max2(Max2(a, b), c)`` in SymPy's argument order, as
    the scalar path builds it: placeholders would reorder the arguments, and at a tie the order
    decides the shares (1/4, 1/4, 1/2 at a three-way tie)."""
    def chain(m):
        pair = Max2 if isinstance(m, sp.Max) else Min2
        acc = m.args[0]
        for a in m.args[1:]:
            acc = pair(acc, a)
        return acc

    return e.replace(lambda m: isinstance(m, sp.Max | sp.Min) and len(m.args) > 2, chain)


def _arg(args: list, node: Node) -> sp.Symbol:
    args.append(node)
    return ph(len(args) - 1)


# -- element-wise maps with broadcasting -------------------------------------------------------

def apply(fn, *operands) -> Node:
    """``fn(*operands)`` element by element; ``fn`` builds a SymPy scalar from placeholders."""
    items = [lift(o) for o in operands]
    nodes = [n for n in items if isinstance(n, Node)]
    sample = any(n.per_sample for n in nodes)
    try:
        ps = _broadcast([_ps(n) for n in nodes])
    except ShapeError as e:
        raise ShapeError(f"{' and '.join(map(repr, nodes))}: {e}") from None
    shape = ((N,) if sample else ()) + ps
    args, phs, k = [], [], 0
    for it in items:
        if isinstance(it, Node):
            off = len(ps) - len(_ps(it)) + (1 if sample else 0)
            # a size-1 axis broadcast against a longer one is read at 0 (a window drops it)
            keep = [j for j, s in enumerate(_ps(it)) if s == shape[off + j]]
            if len(keep) < len(_ps(it)):
                it = window(it, tuple(slice(None) if j in keep else 0
                                      for j in range(len(_ps(it)))))
            axes = ((0,) if it.per_sample else ()) + tuple(off + j for j in keep)
            args.append((it, axes))
            phs.append(ph(k))
            k += 1
        else:
            phs.append(it)
    return map_(fn(*phs), args, shape)


def _broadcast(shapes: Sequence[tuple]) -> tuple:
    out: list = []
    for s in shapes:
        for j in range(1, len(s) + 1):
            if j > len(out):
                out.insert(0, s[-j])
            elif out[-j] == 1:
                out[-j] = s[-j]
            elif out[-j] != s[-j] and s[-j] != 1:
                raise ShapeError(f"per-sample shapes {_fmt(shapes)} do not broadcast: size "
                                 f"{s[-j]} against {out[-j]} on axis -{j} (sizes must be equal, "
                                 "one of them 1, or the axis missing)")
    return tuple(out)


def _fmt(shapes) -> str:
    return " and ".join(str(tuple(s)) for s in shapes)


def scalar_args(what: str, args: tuple) -> tuple:
    """``args`` with every number made a SymPy number; a string (which SymPy would evaluate as
    code) or another non-expression is a TypeError naming ``what``."""
    out = []
    for a in args:
        if isinstance(a, sp.Basic | Node | MixedSum):
            out.append(a)
            continue
        try:
            out.append(sp.sympify(a, strict=True))
        except sp.SympifyError:
            hint = (" (symgrad never evaluates text: build the expression from sg.params and "
                    "sg.data symbols)") if isinstance(a, str) else ""
            raise TypeError(f"{what} takes expressions or numbers, got {type(a).__name__} "
                            f"{a!r}{hint}") from None
    return tuple(out)


def elementwise(fn, name: str | None = None):
    """Wrap a SymPy function so that it maps over arrays and stays SymPy on scalars."""

    def f(*args):
        args = scalar_args(f"sg.{f.__name__}", args)
        mixed = [a for a in args if isinstance(a, MixedSum)]
        if mixed:
            raise refuse(f"sg.{f.__name__}", mixed[0])
        if any(isinstance(a, Node) for a in args):
            return apply(fn, *args)
        return fn(*args)

    f.__name__ = f.__qualname__ = name or getattr(fn, "__name__", "f")
    f.__doc__ = (f"``{f.__name__}`` element by element on arrays; SymPy's ``{f.__name__}`` on "
                 "scalars.")
    return f


# -- contractions --------------------------------------------------------------------------------

_SAMPLE_LABEL = "#"


def einsum(spec: str, *operands) -> Node:
    """A one- or two-operand einsum over per-sample axes (``"hd,d->h"``); the sample axis is
    carried along for per-sample operands. Every label names one axis: a label repeated within
    an operand or the output (a diagonal, a trace) is refused; a label in one operand only and
    not in the output is summed over (``"ij,k->ik"``).

    >>> import symgrad as sg
    >>> U = sg.params("U", shape=(4, 2)); V = sg.params("V", shape=(3, 2))
    >>> sg.einsum("ik,jk->ij", U, V).shape
    (4, 3)
    """
    ins, _, out = spec.replace(" ", "").partition("->")
    labels = ins.split(",")
    if not _ or len(labels) != len(operands) or len(operands) not in (1, 2):
        raise ValueError(f"einsum spec {spec!r}: give 'ab,bc->ac' for two operands or 'ab->b' "
                         "for one, with an explicit output")
    nodes = [lift(o) for o in operands]
    if not all(isinstance(n, Node) for n in nodes):
        raise TypeError("einsum operands must be arrays")
    for lab in (*labels, out):
        rep = sorted({c for c in lab if lab.count(c) > 1})
        if rep:
            raise ShapeError(
                f"einsum spec {spec!r}: label '{rep[0]}' is repeated in '{lab}'; diagonals and "
                "traces are not supported (each label names one axis of an operand): for a "
                "trace, multiply by an identity held in a data array, sg.sum(A * I) with "
                "I = sg.data('I', shape=(n, n), samples=False)")
    for lab, n in zip(labels, nodes, strict=True):
        if len(lab) != len(_ps(n)):
            raise ShapeError(f"einsum spec {spec!r}: '{lab}' has {len(lab)} labels but {n!r} "
                             f"has {len(_ps(n))} axes per sample")
    full = [(_SAMPLE_LABEL if n.per_sample else "") + lab for lab, n in zip(labels, nodes,
                                                                             strict=True)]
    sample = any(n.per_sample for n in nodes)
    lo = (_SAMPLE_LABEL if sample else "") + out
    if len(nodes) == 1:
        (n,), (la,) = nodes, full
        if set(lo) - set(la):
            raise ShapeError(f"einsum spec {spec!r}: output label not in the operand")
        return reduce_("sum", n, tuple(la.index(c) for c in lo))
    return contract(nodes[0], nodes[1], full[0], full[1], lo)


def matmul(a, b) -> Node:
    """``a @ b`` on per-sample shapes (vectors and matrices, as NumPy's matmul)."""
    a, b = lift(a), lift(b)
    if not (isinstance(a, Node) and isinstance(b, Node)):
        raise TypeError("@ needs two arrays")
    ra, rb = len(_ps(a)), len(_ps(b))
    if not (1 <= ra <= 2 and 1 <= rb <= 2):
        raise ShapeError(f"@ takes vectors and matrices; {a!r} @ {b!r} has ranks {ra} and {rb}: "
                         "use sg.einsum for higher ranks")
    la = "ik"[2 - ra:]
    lb = "kj"[:rb]
    lo = ("i" if ra == 2 else "") + ("j" if rb == 2 else "")
    if _ps(a)[-1] != _ps(b)[0]:
        raise ShapeError(f"matmul: {a!r} @ {b!r}: the last axis of the left ({_ps(a)[-1]}) does "
                         f"not match the first axis of the right ({_ps(b)[0]})")
    return einsum(f"{la},{lb}->{lo}", a, b)


# -- operators on nodes ---------------------------------------------------------------------------

def _transpose(n: Node) -> Node:
    off = 1 if n.per_sample else 0
    rank = n.ndim - off
    axes = tuple(range(off)) + tuple(off + rank - 1 - j for j in range(rank))
    return map_(ph(0), [(n, axes)], tuple(n.shape[a] for a in axes))


def _getitem(n: Node, key) -> Node:
    """Ints and step-1 slices (``u[1:, :]``, ``W[0, 3]``), or rows picked per sample by an
    integer data column (``U[i]``, ``U[i, 2]``)."""
    key = key if isinstance(key, tuple) else (key,)
    for k in key:
        if isinstance(k, sp.Basic) and not k.is_Integer:
            raise ShapeError(
                f"{n!r}[{', '.join(map(str, key))}]: {k} is not an int; rows are picked by an "
                "integer data column (sg.data('i', dtype=int), then U[i]), and shifted index "
                "expressions such as u[i + 1, j] are written as slices: u[1:, :] - u[:-1, :]")
    if key and isinstance(key[0], Node):
        rows = gather(n, key[0])
        if len(key) == 1:
            return rows
        return _getitem(rows, key[1:])
    if any(k is Ellipsis for k in key):
        raise ShapeError(f"{n!r}[...]: write every axis (ints or slices such as 1: and :-1)")
    lead = 1 if n.per_sample else 0
    key = key + (slice(None),) * (n.ndim - lead - len(key))
    return window(n, tuple(int(k) if isinstance(k, sp.Integer) else k for k in key))


def _no_iter(n: Node):
    raise TypeError(f"an array expression ({n!r}) is not iterated over: reduce it with "
                    "sg.sum/sg.mean(..., axis=...), index elements (W[0, 1]) or use sg.einsum")


_WHAT = {"add": "the sum", "sub": "the difference", "mul": "the product",
         "truediv": "the quotient", "pow": "the power"}


def _binary(name: str, op):
    """``self op other`` and ``other op self``. An index sum (a SymPy expression) added to or
    subtracted from a scalar array loss gives a :class:`MixedSum`; any other combination of
    the two is refused by name; a MixedSum operand is left to its own operators."""
    def combine(a, b, node, other):
        if isinstance(other, MixedSum):
            return NotImplemented
        if has_index_sum(other):
            if name == "add":
                return mix(other, node)
            if name == "sub":
                return mix(-other, node) if a is node else mix(other, -node)
            raise refuse(_WHAT[name], a, b)
        return apply(op, a, b)

    return (lambda self, other: combine(self, other, self, other),
            lambda self, other: combine(other, self, self, other))


def _install() -> None:
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "truediv": lambda a, b: a / b, "pow": lambda a, b: a ** b}
    for name, op in ops.items():
        fwd, rev = _binary(name, op)
        setattr(Node, f"__{name}__", fwd)
        setattr(Node, f"__r{name}__", rev)
    Node.__neg__ = lambda self: apply(lambda a: -a, self)
    Node.__pos__ = lambda self: self
    Node.__matmul__ = matmul
    Node.__rmatmul__ = lambda self, other: matmul(other, self)
    Node.__getitem__ = _getitem
    Node.__iter__ = _no_iter
    Node.T = property(_transpose)
    Node.sum = lambda self, axis=None: sum_(self, axis)
    Node.mean = lambda self, axis=None: mean(self, axis)
    Node.max = lambda self, axis=None: max_(self, axis)
    Node.__array_ufunc__ = None  # NumPy defers to the reflected operators


_install()

