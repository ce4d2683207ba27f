"""Split tangents into work done once and work done per direction (a Jacobian's columns).

A Jacobian by forward mode evaluates one tangent per entry of ``x``. A tangent map such as
``(1 - tanh(a + b)**2) * (ta + tb)`` mixes the two kinds of work: its coefficient
``1 - tanh(a + b)**2`` reads forward values only and is the same for every direction, while
``ta + tb`` changes with it. :func:`hoist` rewrites every map of a tangent graph that is linear
in its tangent arguments (they all are: a tangent is linear in its seed) as
``sum_k c_k * t_k``, each coefficient ``c_k`` a forward map of its own (or a forward argument,
or a constant), so a caller can compute the coefficients once and only the cheap linear part
per direction. Coefficients that are plain arithmetic stay inline (recomputing them costs
about what loading them would).

>>> import symgrad as sg
>>> from symgrad.ad.array import tangents
>>> from symgrad.ir.graph import Leaf
>>> w = sg.params("w", shape=(3,)); v = Leaf("tangent", "w", (3,))
>>> (t,) = tangents([sg.tanh(w)], {w: v})
>>> t
map(_a0*(1 - tanh(_a1)**2); w[3], w[3])
>>> hoist([t], [v])[0]
map(_a0*_a1; w[3], map(1 - tanh(_a0)**2; w[3]))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sympy as sp

from ..ad.array import topo
from ..ir.graph import Leaf, Map, Node, map_, ph

__all__ = ["costly", "hoist", "rebuild"]


def rebuild(n: Node, args: Sequence[Node]) -> Node:
    """``n`` with other arguments (the same kind, shape and payload; hash-consed)."""
    if all(a is b for a, b in zip(args, n.args, strict=True)):
        return n
    obj = Node.__new__(type(n), n.shape, tuple(args), n.key[2])
    for cls in type(n).__mro__[:-2]:  # the subclass slots (Node's own are set by __new__)
        for slot in getattr(cls, "__slots__", ()):
            setattr(obj, slot, getattr(n, slot))
    return obj


def costly(c: sp.Expr) -> bool:
    """Whether a formula is worth computing once rather than per use: it calls a function
    (exp, tanh, Piecewise, a kink) or takes a non-integer power."""
    return bool(c.atoms(sp.Function)) or any(not p.exp.is_Integer for p in c.atoms(sp.Pow))


def _split(m: Map, active: list[bool]) -> Map:
    """``m`` as ``sum_k c_k * t_k`` over its tangent arguments ``t_k`` (``active``), or ``m``
    itself when it is not linear in them."""
    tans = [ph(k) for k, a in enumerate(active) if a]
    coefs = {t: sp.diff(m.expr, t) for t in tans}
    if any(c.has(*tans) for c in coefs.values()) or m.expr.xreplace(
            dict.fromkeys(tans, 0)) != 0:
        return m
    every = list(zip(m.args, m.axes, strict=True))
    extra: list[tuple[Node, tuple]] = []  # the coefficient maps, read as ph(len(every) + i)
    terms = []
    for t, c in coefs.items():
        if c == 0:
            continue
        if costly(c):  # one forward map per distinct coefficient (equal maps are one node),
            k0, c = c.as_coeff_Mul()  # its numeric factor left inline (-c is c's map)
            coef = (map_(c, every, m.shape), tuple(range(len(m.shape))))
            if coef not in extra:
                extra.append(coef)
            c = k0 * ph(len(every) + extra.index(coef))
        terms.append(c * t)
    if not terms:
        return m
    return map_(sp.Add(*terms), every + extra, m.shape, inline=False)


def hoist(outputs: Sequence[Node | None], seeds: Iterable[Leaf]) -> list[Node | None]:
    """The tangent graphs ``outputs`` (seeded by the leaves ``seeds``) with every map that
    reads a tangent split into forward coefficients times tangents (the same values)."""
    seeds = set(map(id, seeds))
    new: dict[int, Node] = {}
    tangent: set[int] = set()
    for n in topo([o for o in outputs if o is not None]):
        if isinstance(n, Leaf):
            new[id(n)] = n
            if id(n) in seeds:
                tangent.add(id(n))
            continue
        args = [new[id(a)] for a in n.args]
        m = rebuild(n, args)
        active = [id(a) in tangent for a in args]
        if any(active):
            if isinstance(m, Map):
                m = _split(m, active)
            tangent.add(id(m))
        new[id(n)] = m
    return [None if o is None else new[id(o)] for o in outputs]
