"""An array loss, validated: its parameters in packing order, its data arrays and named sizes.

``x`` packs every parameter flattened in C order, one after the other in :attr:`params` order
(scalar parameters are arrays of shape ``()``). Sizes never enter the generated code: every
declared axis (``W1`` axis 0, ``W1`` axis 1, ``X`` axis 1...) is one entry of a ``dims`` vector
passed at call time, named by the axis, never by its value.

>>> import symgrad as sg
>>> W = sg.params("W", shape=(3, 2)); b = sg.params("b", shape=(3,))
>>> X = sg.data("X", shape=(2,))
>>> p = array_problem(sg.mean(sg.sum(sg.tanh(W @ X + b), axis=0)))
>>> [(q.name, q.shape) for q in p.params], [(d.owner, d.axis) for d in p.dims], p.size
([('W', (3, 2)), ('b', (3,))], [('W', 0), ('W', 1), ('X', 1), ('b', 0)], 9)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from ..ad.array import topo
from ..lang.ops import lift
from .functions import ANALYTIC
from .graph import Dim, Leaf, Map, N, Node, Reduce
from .problem import Named, ProblemError, _check_functions, listed
from .symtypes import declaration_order

__all__ = ["ArrayProblem", "Packing", "array_problem"]


class Packing(Named):
    """How ``x`` packs a problem's ``params`` (each flattened in C order, one after another):
    shared by loss and model problems."""

    params: tuple[Leaf, ...]

    @property
    def size(self) -> int:
        """The length of ``x``."""
        return sum(math.prod(p.shape) for p in self.params)

    def offsets(self) -> list[int]:
        """Where each parameter starts in ``x``."""
        out, o = [], 0
        for p in self.params:
            out.append(o)
            o += math.prod(p.shape)
        return out


@dataclass(frozen=True)
class ArrayProblem(Packing):
    """A scalar array loss with its parameters (packing order), data arrays and sizes."""

    loss: Node
    params: tuple[Leaf, ...]
    data: tuple[Leaf, ...]
    dims: tuple[Dim, ...]

    @property
    def analytic(self) -> bool:
        """No kinks anywhere (max reductions and kink functions are not analytic)."""
        for n in topo([self.loss]):
            if isinstance(n, Reduce) and n.op == "max":
                return False
            if isinstance(n, Map) and any(type(f) not in ANALYTIC
                                          for f in n.expr.atoms(sp.Function)):
                return False
            if isinstance(n, Map) and n.expr.has(sp.Piecewise, sp.Abs, sp.Max, sp.Min):
                return False
        return True


def array_problem(loss, params: Sequence | None = None) -> ArrayProblem:
    """Validate an array loss: a scalar with no sample axis left, names used once."""
    node = lift(loss)
    if not isinstance(node, Node):
        raise ProblemError("the loss is a constant: it has no parameters")
    if node.shape != ():
        what = ("it still has the sample axis: reduce it with sg.mean(...) or sg.sum(...)"
                if node.per_sample else "reduce it with sg.sum(...) or sg.mean(...)")
        raise ProblemError(f"the loss must be a scalar, got an array of shape {node.shape}: "
                           f"{what}")
    order = topo([node])  # every node once, arguments first
    found, data = graph_leaves(order)
    if not data and any(N in n.shape for n in order):
        raise ProblemError("the loss reduces over samples but reads no data array")
    ordered = _order(found, params)
    dims = graph_dims(order)
    return ArrayProblem(node, tuple(ordered), data, dims)


def graph_leaves(order: list[Node]) -> tuple[list[Leaf], tuple[Leaf, ...]]:
    """Check an array graph (``order``: its nodes, arguments first): the functions of its Maps
    are printable and each name is one array. Its parameters (in graph order) and its data
    arrays (by name)."""
    leaves = [n for n in order if isinstance(n, Leaf)]
    for n in order:
        if isinstance(n, Map):
            _check_functions(n.expr)
    by_name: dict[str, Leaf] = {}
    for leaf in leaves:
        other = by_name.setdefault(leaf.name, leaf)
        if other is not leaf and other.role == leaf.role:
            raise ProblemError(
                f"'{leaf.name}' is declared twice with different layouts ({other!r} and "
                f"{leaf!r}) and both appear in the expression: one built before re-declaring "
                "it still holds the old one; rebuild the expression from one declaration")
        if other is not leaf:
            raise ProblemError(f"the name '{leaf.name}' is used for two different arrays "
                               f"({other!r} as {other.role} and {leaf!r} as {leaf.role}): "
                               "use one name per array")
    found = [q for q in leaves if q.role == "param"]
    data = tuple(sorted((q for q in leaves if q.role in ("data", "index")), key=lambda q: q.name))
    return found, data


def graph_dims(nodes: Sequence[Node]) -> tuple[Dim, ...]:
    """The sizes the axes of ``nodes`` name, each once (parts, i.e. slices, are written from
    their axis)."""
    dims: dict[tuple, Dim] = {}
    for n in nodes:
        for s in n.shape:
            if s != N and not s.trim:
                dims.setdefault(s.key, s)
    return tuple(dims.values())


def _order(found: list[Leaf], params: Sequence | None) -> list[Leaf]:
    if params is None:
        return sorted(found, key=lambda q: (declaration_order(q), q.name))
    out = []
    names = {q.name: q for q in found}
    for p in listed(params):
        name = p.name if isinstance(p, Leaf | sp.Symbol) else str(p)
        if name not in names:
            raise ProblemError(f"parameter '{name}' does not appear in the loss")
        out.append(names[name])
    missing = [q.name for q in found if q not in out]
    if missing:
        raise ProblemError(f"the loss also depends on {', '.join(missing)}: list every "
                           "parameter in params=")
    return out
