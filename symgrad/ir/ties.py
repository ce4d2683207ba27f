"""The sizes a graph ties together: the pairs of declared axes that must be equal.

A generated array module reads every size from its ``dims`` argument, one entry per declared
axis (``W1[D3, D4]``, ``X[N, D5]``), so one module serves every size. The graph requires some of
them to be equal (the axes a product contracts or an element-wise operation pairs); a module
called with sizes that break a tie would read past its arrays, so it checks them on entry.

>>> import symgrad as sg
>>> W, X = sg.params("W", shape=(4, 3)), sg.data("X", shape=(3,))
>>> [(a.owner, a.axis, b.owner, b.axis) for a, b in ties([sg.sum(W @ X, axis=0)])]
[('W', 1, 'X', 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ad.array import topo
from .dims import Dim
from .graph import Contract, Map, N, Node, Scatter

__all__ = ["ties"]


def ties(nodes: Sequence[Node]) -> list[tuple[Dim, Dim]]:
    """Each pair of different declared sizes (or parts of them) the graph requires equal,
    once, in a deterministic order (the graph's)."""
    seen: set[tuple] = set()
    out: list[tuple[Dim, Dim]] = []

    def tie(a, b) -> None:
        if a == N or b == N or not isinstance(a, Dim) or not isinstance(b, Dim):
            return
        key = tuple(sorted((a.key, b.key)))
        if a.key != b.key and key not in seen:
            seen.add(key)
            out.append((a, b))

    for n in topo(list(nodes)):
        if isinstance(n, Map):
            for arg, axes in zip(n.args, n.axes, strict=True):
                for k, ax in enumerate(axes):
                    tie(arg.shape[k], n.shape[ax])
        elif isinstance(n, Contract):
            la, lb, lo = n.labels
            first: dict[str, object] = {}
            for labels, shape in ((la, n.args[0].shape), (lb, n.args[1].shape),
                                  (lo, n.shape)):
                for c, s in zip(labels, shape, strict=True):
                    tie(first.setdefault(c, s), s)
        elif isinstance(n, Scatter):
            for a, b in zip(n.args[0].shape[1:], n.shape[1:], strict=True):
                tie(a, b)
    return out
