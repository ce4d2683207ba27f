"""The problem of a model: an expression that keeps the sample axis, validated, with the
packing of its parameters (``x``), its data arrays and its sizes.

>>> import symgrad as sg
>>> a, b = sg.params("a b"); t = sg.data("t")
>>> p = model_problem(a * sg.exp(-b * t))
>>> p.param_names, [d.name for d in p.data], p.output.shape
(('a', 'b'), ['t'], ('N',))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from ..ad.array import topo
from ..ir.symtypes import Data, IndexedSum, Mean, Sum
from ..lang.ops import lift
from .array_problem import Packing, _order, graph_dims, graph_leaves
from .graph import Dim, Leaf, Node
from .problem import ProblemError

__all__ = ["ModelProblem", "is_model", "model_problem"]


@dataclass(frozen=True)
class ModelProblem(Packing):
    """A per-sample output with its parameters (packing order), data arrays and sizes."""

    output: Node
    params: tuple[Leaf, ...]
    data: tuple[Leaf, ...]
    dims: tuple[Dim, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The output's shape per sample."""
        return tuple(int(s) for s in self.output.shape[1:])


def is_model(expr) -> bool:
    """Whether ``expr`` keeps the sample axis: an array with axis ``N``, or a SymPy expression
    that reads a data column outside every reduction (``a*exp(-b*t) + c``)."""
    if isinstance(expr, Node):
        return expr.per_sample
    if not isinstance(expr, sp.Basic) or isinstance(expr, sp.MatrixBase):
        return False
    if expr.has(IndexedSum, sp.Indexed):
        return False
    outer = expr.xreplace({r: sp.Dummy() for r in expr.atoms(Mean, Sum)})
    stray = [s for s in outer.free_symbols if isinstance(s, Data)]
    return bool(stray) and all(s.width is None for s in stray)  # components: the scalar path


def model_problem(expr, params: Sequence | None = None) -> ModelProblem:
    """Validate a model: an array that keeps the sample axis (axis 0), names used once.

    ``params`` fixes the packing order; given as :class:`Leaf` arrays (a loss's parameters), it
    may hold parameters the model does not read (they keep their place in ``x``)."""
    try:
        node = lift(expr)
    except TypeError as exc:
        raise ProblemError(str(exc)) from None
    if not isinstance(node, Node) or not node.per_sample:
        raise ProblemError("a model must keep the sample axis (one output per sample): "
                           f"{expr} reads no per-sample data array outside a reduction")
    order = topo([node])
    found, data = graph_leaves(order)
    if params is not None and all(isinstance(p, Leaf) for p in params):
        ordered = _with_unused(found, list(params))
    else:
        ordered = _order(found, params)
    dims = graph_dims([*order, *ordered])  # every parameter's axes: x's layout needs them all
    return ModelProblem(node, tuple(ordered), data, dims)


def _with_unused(found: list[Leaf], params: list[Leaf]) -> list[Leaf]:
    """A loss's parameters as the model's packing: every parameter the model reads is one of
    them, with the same shape."""
    known = {p.name: p for p in params}
    for q in found:
        if q.name not in known:
            raise ProblemError(f"the output reads parameter '{q.name}', which the loss does not: "
                               "an output shares the loss's parameters (x)")
        if known[q.name] is not q:
            raise ProblemError(f"the output's '{q.name}' is {q!r} but the loss's is "
                               f"{known[q.name]!r}: build both from one declaration")
    return params
