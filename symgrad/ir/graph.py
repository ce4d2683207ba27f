"""Array expressions: each array is one node of a DAG, whatever its size.

Five node kinds cover dense layers, losses and their derivatives:

- ``Leaf``: a parameter array (packed into ``x``) or a per-sample data array;
- ``Map``: a scalar SymPy expression applied element by element to argument arrays, each
  argument spanning some axes of the output (this is how biases broadcast and how a transpose
  is written);
- ``Contract``: a two-operand einsum (matrix products, outer products, Hadamard and dot products);
- ``Reduce``: ``sum``, ``max`` or a stable ``lse`` (log-sum-exp) over the axes not kept;
- ``Window``/``Pad``: ints and slices of an array (``W[0, 3]``, ``u[1:, :]``) and the adjoint;
- ``Gather``/``Scatter``: rows picked per sample by an integer data array (``U[i]``) and the
  adjoint (rows added back).

Shapes hold concrete sizes for checking; the sample axis is written ``N`` and is axis 0 of every
per-sample node. Generated code never sees a size: sizes are call-time arguments. Nodes are
hash-consed, so equal subexpressions are one node (common subexpressions come for free) and
nodes compare by identity.

>>> W = Leaf("param", "W", (3, 2)); X = Leaf("data", "X", (N, 2))
>>> Z = contract(W, X, "hd", "nd", "nh")
>>> Z.shape
('N', 3)
"""

from __future__ import annotations

import weakref

import sympy as sp

from ..errors import ProblemError
from .dims import Dim

__all__ = [
    "SAMPLES",
    "Contract",
    "Dim",
    "Gather",
    "Leaf",
    "Map",
    "N",
    "Node",
    "Pad",
    "Reduce",
    "Scatter",
    "ShapeError",
    "Window",
    "contract",
    "map_",
    "ph",
    "reduce_",
]

#: The sample axis in a shape: axis 0 of every per-sample node.
N = "N"
#: The number of samples (of the batch) inside a Map expression.
SAMPLES = sp.Symbol("_N", positive=True, integer=True)
#: Maps whose expression is larger than this many operations are not inlined into consumers.
INLINE_OPS = 60


class ShapeError(ProblemError):
    """Array shapes that do not fit (the message names the arrays, axes and sizes)."""


def ph(k: int) -> sp.Symbol:
    """The placeholder of a Map's k-th argument inside its scalar expression."""
    return sp.Symbol(f"_a{k}", real=True)


_INTERN: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Node:
    """An array-valued expression (base class; operators live in ``symgrad.lang.ops``)."""

    kind = "node"
    __slots__ = ("__weakref__", "args", "key", "shape")

    def __new__(cls, shape: tuple, args: tuple, payload: tuple):
        key = (cls.kind, shape, payload, tuple(id(a) for a in args))
        hit = _INTERN.get(key)
        if hit is not None:
            return hit
        obj = object.__new__(cls)
        obj.shape, obj.args, obj.key = shape, args, key
        _INTERN[key] = obj
        return obj

    @property
    def per_sample(self) -> bool:
        return bool(self.shape) and self.shape[0] == N

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:  # identity (hash-consed); ops.py overrides nothing here
        return self is other

    def __bool__(self) -> bool:
        raise TypeError("an array expression has no truth value (it is evaluated at call time)")


class Leaf(Node):
    """A parameter (``role='param'``), a per-sample data array (``'data'``), an integer
    per-sample data column that picks rows (``'index'``), or a tangent direction
    (``'tangent'``, the ``v`` of a Hessian-vector product)."""

    kind = "leaf"
    __slots__ = ("name", "role")

    def __new__(cls, role: str, name: str, shape: tuple):
        shape = tuple(s if s == N or isinstance(s, Dim) else Dim(s, name, j)
                      for j, s in enumerate(shape))
        obj = super().__new__(cls, shape, (), (role, name))
        obj.role, obj.name = role, name
        return obj

    def __repr__(self) -> str:
        return f"{self.name}{_shape_str(self.shape)}"


class Map(Node):
    """``out[i...] = expr(args[0][i at axes[0]], args[1][i at axes[1]], ...)``."""

    kind = "map"
    __slots__ = ("axes", "expr")

    def __new__(cls, expr: sp.Expr, args: tuple, axes: tuple, shape: tuple):
        obj = super().__new__(cls, shape, args, (expr, axes))
        obj.expr, obj.axes = expr, axes
        return obj

    def __repr__(self) -> str:
        return f"map({self.expr}; {', '.join(map(repr, self.args))})"


class Contract(Node):
    """A two-operand einsum with one label per axis: ``labels = (la, lb, lo)``."""

    kind = "contract"
    __slots__ = ("labels",)

    def __new__(cls, a: Node, b: Node, labels: tuple, shape: tuple):
        obj = super().__new__(cls, shape, (a, b), labels)
        obj.labels = labels
        return obj

    def __repr__(self) -> str:
        la, lb, lo = self.labels
        return f"einsum('{la},{lb}->{lo}', {self.args[0]!r}, {self.args[1]!r})"


class Reduce(Node):
    """``op`` (sum, max, lse) over the axes of ``arg`` not in ``keep`` (kept in that order)."""

    kind = "reduce"
    __slots__ = ("keep", "op")

    def __new__(cls, op: str, arg: Node, keep: tuple):
        obj = super().__new__(cls, tuple(arg.shape[k] for k in keep), (arg,), (op, keep))
        obj.op, obj.keep = op, keep
        return obj

    def __repr__(self) -> str:
        return f"{self.op}({self.args[0]!r}, keep={self.keep})"


class _Windowed(Node):
    """A node with one argument and a window ``spec`` (per non-sample axis: an int, or
    ``(start, trimmed at the end)``)."""

    __slots__ = ("spec",)

    def __new__(cls, arg: Node, spec: tuple, shape: tuple):
        obj = super().__new__(cls, shape, (arg,), spec)
        obj.spec = spec
        return obj


class Window(_Windowed):
    """A window of ``arg``: ``u[1:, :]`` and ``W[0, 3]`` are windows."""

    kind = "window"
    __slots__ = ()

    def __repr__(self) -> str:
        return f"{self.args[0]!r}[{_spec_str(self.spec)}]"


class Pad(_Windowed):
    """The adjoint of :class:`Window`: zeros of ``shape`` holding ``arg`` in the window."""

    kind = "pad"
    __slots__ = ()

    def __repr__(self) -> str:
        return f"pad({self.args[0]!r}, [{_spec_str(self.spec)}], {_shape_str(self.shape)})"


class Gather(Node):
    """Rows of ``src`` picked per sample by an integer data array: ``U[i]``."""

    kind = "gather"
    __slots__ = ()

    def __new__(cls, src: Node, idx: Node):
        return super().__new__(cls, (N, *src.shape[1:]), (src, idx), ())

    @property
    def source_name(self) -> str:
        """The name of the array the rows are picked from (for messages)."""
        src = self.args[0]
        return src.name if isinstance(src, Leaf) else repr(src)

    def __repr__(self) -> str:
        return f"{self.args[0]!r}[{self.args[1].name}]"


class Scatter(Node):
    """The adjoint of :class:`Gather`: per-sample rows added into an array of ``shape``."""

    kind = "scatter"
    __slots__ = ()

    def __new__(cls, arg: Node, idx: Node, shape: tuple):
        return super().__new__(cls, shape, (arg, idx), ())

    def __repr__(self) -> str:
        return f"scatter_add({self.args[0]!r}, {self.args[1].name}, {_shape_str(self.shape)})"


def _spec_str(spec: tuple) -> str:
    return ", ".join(str(w) if isinstance(w, int) else
                     f"{w[0] or ''}:{-w[1] if w[1] else ''}" for w in spec)


def _shape_str(shape: tuple) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# -- smart constructors: canonical forms, inlining, shape checks ---------------------------------

def _ops(e: sp.Expr) -> int:
    return sp.count_ops(e, visual=False)


def _is_identity(n: Node) -> bool:
    return isinstance(n, Map) and n.expr == ph(0)


def map_(expr, args, shape: tuple, inline: bool = True) -> Node:
    """A Map with element-wise chains fused: Map arguments are inlined into ``expr``.

    ``args`` is a sequence of ``(node, axes)``: ``axes[j]`` is the output axis that axis ``j``
    of the node runs along. Arguments are deduplicated and renumbered in order of appearance,
    so equal maps are one node. ``inline=False`` keeps Map arguments as arguments (read from
    where they are stored), identity maps aside.
    """
    expr = sp.sympify(expr, strict=True)  # never a string: it would be evaluated
    shape = tuple(shape)
    flat: list[tuple[Node, tuple]] = []
    subs: dict = {}
    for k, (node, axes) in enumerate(args):
        axes = tuple(axes)
        for j, a in enumerate(axes):
            if node.shape[j] != shape[a]:
                raise ShapeError(f"axis {j} of {node!r} has size {node.shape[j]} but is mapped "
                                 f"to an axis of size {shape[a]}")
        if isinstance(node, Map) and (_is_identity(node)
                                      or (inline and _ops(node.expr) <= INLINE_OPS)):
            inner = {}
            for m, (n2, ax2) in enumerate(zip(node.args, node.axes, strict=True)):
                inner[ph(m)] = _slot(flat, n2, tuple(axes[a] for a in ax2))
            subs[ph(k)] = node.expr.xreplace(inner)
        else:
            subs[ph(k)] = _slot(flat, node, axes)
    expr = expr.xreplace(subs)
    # renumber the slots in order of first appearance in the expression (canonical form)
    order = list(dict.fromkeys(s for s in sp.preorder_traversal(expr)
                               if isinstance(s, sp.Symbol) and s.name.startswith("_s")))
    expr = expr.xreplace({s: ph(k) for k, s in enumerate(order)})
    nargs = tuple(flat[int(s.name[2:])] for s in order)
    if expr == ph(0) and nargs[0][1] == tuple(range(len(shape))) and nargs[0][0].shape == shape:
        return nargs[0][0]
    return Map(expr, tuple(n for n, _ in nargs), tuple(a for _, a in nargs), shape)


def _slot(flat: list, node: Node, axes: tuple) -> sp.Symbol:
    for k, (n, a) in enumerate(flat):
        if n is node and a == axes:
            return sp.Symbol(f"_s{k}", real=True)
    flat.append((node, axes))
    return sp.Symbol(f"_s{len(flat) - 1}", real=True)


def _unperm(node: Node) -> tuple[Node, tuple | None]:
    """``(source, axes)`` when ``node`` is a pure transpose of ``source``, else ``(node, None)``.

    An identity Map whose argument spans fewer axes than it has is a broadcast, not a transpose.
    """
    if _is_identity(node) and sorted(node.axes[0]) == list(range(node.ndim)):
        return node.args[0], node.axes[0]
    return node, None


def contract(a: Node, b: Node, la: str, lb: str, lo: str) -> Node:
    """``einsum(f'{la},{lb}->{lo}', a, b)`` with its shape checked and transposes absorbed."""
    sa, pa = _unperm(a)
    if pa is not None:
        a, la = sa, "".join(la[p] for p in pa)
    sb, pb = _unperm(b)
    if pb is not None:
        b, lb = sb, "".join(lb[p] for p in pb)
    if len(la) != a.ndim or len(lb) != b.ndim:
        raise ShapeError(f"einsum labels '{la},{lb}' do not match the ranks of {a!r} and {b!r}")
    size: dict[str, object] = {}
    for lab, node in ((la, a), (lb, b)):
        if len(set(lab)) != len(lab):
            raise ShapeError(f"repeated label in '{lab}' (diagonals are not supported)")
        for ax, (c, s) in enumerate(zip(lab, node.shape, strict=True)):
            if size.setdefault(c, s) != s:
                raise ShapeError(f"size mismatch on '{c}': axis {ax} of {node!r} has size {s}, "
                                 f"the other operand has {size[c]}")
    if len(set(lo)) != len(lo):
        raise ShapeError(f"repeated output label in '{lo}' (diagonals are not supported)")
    for c in lo:
        if c not in size:
            raise ShapeError(f"output label '{c}' is in neither operand")
    shape = tuple(size[c] for c in lo)
    if N in shape and shape[0] != N:
        raise ShapeError("the sample axis must stay the first axis of the result")
    # a label in one operand only and not in the output is summed in that operand first
    lone_a = [c for c in la if c not in lb and c not in lo]
    lone_b = [c for c in lb if c not in la and c not in lo]
    if lone_a or lone_b:
        ka, kb = (tuple(j for j, c in enumerate(lab) if c not in lone)
                  for lab, lone in ((la, lone_a), (lb, lone_b)))
        return contract(reduce_("sum", a, ka), reduce_("sum", b, kb),
                        "".join(la[j] for j in ka), "".join(lb[j] for j in kb), lo)
    if not la or not lb:  # a scalar operand: the contraction is a scaling (a Map)
        lab, other = (lb, b) if not la else (la, a)
        scalar = a if not la else b
        return map_(ph(0) * ph(1), [(scalar, ()), (other, tuple(lo.index(c) for c in lab))],
                    shape)
    return Contract(a, b, (la, lb, lo), shape)


def reduce_(op: str, arg: Node, keep) -> Node:
    """``op`` over the axes of ``arg`` not in ``keep``; keeping every axis is a transpose."""
    keep = tuple(keep)
    if sorted(keep) == list(range(arg.ndim)):
        if keep == tuple(range(arg.ndim)):
            return arg
        inv = tuple(keep.index(j) for j in range(arg.ndim))
        return map_(ph(0), [(arg, inv)], tuple(arg.shape[k] for k in keep))
    src, perm = _unperm(arg)
    if perm is not None:  # reduce the untransposed source: keep its axes at their positions
        back = {p: j for j, p in enumerate(perm)}
        return reduce_(op, src, tuple(back[k] for k in keep))
    if N in (arg.shape[k] for k in keep[1:]):
        raise ShapeError("the sample axis must stay the first axis of the result")
    return Reduce(op, arg, keep)
