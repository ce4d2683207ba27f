"""Sibling loop fusion: independent loop nests over the same sizes become one nest.

The array emitter writes one loop nest per materialised node. A grid energy
``sum((u[1:, :] - u[:-1, :])**2) + sum((u[:, 1:] - u[:, :-1])**2)`` and its gradient are three
nests over ``(D0 - 1, D1)``, ``(D0, D1 - 1)`` and ``(D0, D1)``: three passes over ``u`` where a
hand loop makes one. :func:`schedule` groups such nests: nests of the same rank over the same
size symbols (extents differing only by the constants a slice trims) that do not depend on
one another are one nest over the largest extents, each member under a guard
(``if i0 < D0 - 1:``) where its extents are smaller, each sum keeping its own accumulator.

Dependences are read off the names in the text: a nest writes its stores' targets (or its sum's
result) and reads every other name it mentions; a raw statement writes its assignment's target,
and a statement that is not an assignment (a BLAS call) is taken to write every name it
mentions. Two nests fuse only when neither writes a name the other mentions and no chain of
dependences runs from one to the other through the statements between them; the statements are
then emitted in an order that keeps every dependence (a buffer's allocation before the fused
nest, a sum's consumers after it), otherwise in their original order. A raw view
(``t4 = g[0:o1].reshape(...)``) makes its name and its base one array for nests that mention
both, so that writing through one name and reading through the other is seen (the emitter
writes output slices through their view only, which keeps those fusible).

>>> from symgrad.ir.dims import Dim
>>> d0, d1 = Dim(4, "u", 0), Dim(5, "u", 1)
>>> a = Nest((Dim.part(d0, 1, 0), d1), [], total=("s1", "(u[i0 + 1, i1] - u[i0, i1])**2"))
>>> b = Nest((d0, Dim.part(d1, 1, 0)), [], total=("s2", "(u[i0, i1 + 1] - u[i0, i1])**2"))
>>> [len(x) if isinstance(x, list) else x for x in schedule([a, b, "s = s1 + s2"])]
[2, 's = s1 + s2']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir.graph import N

__all__ = ["Nest", "extents", "guards", "names", "schedule"]

_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_ASSIGN = re.compile(r"\s*([A-Za-z_]\w*)(?:\[.*\])?\s*[-+*/]?=(?!=)")
#: ``view = base``, ``base[...]``, ``base.reshape(...)`` or ``base.T`` (a raw statement)
_VIEW = re.compile(r"([A-Za-z_]\w*) = ([A-Za-z_]\w*)(?:\[[^\]]*\])?(?:\.reshape\(.*\)|\.T)?$")
#: names no statement of a body assigns: loop indices (bound by each nest's own ``for``),
#: modules, builtins and keywords
_FIXED = re.compile(r"(i\d+|j\d+|c|np|math|cmath|numba|range|max|min|abs|float|int|if|else|"
                    r"and|or|not|in|for|True|False|None)")


def names(text: str) -> set[str]:
    """The names ``text`` mentions (attributes and loop indices left out)."""
    return {m for m in _NAME.findall(text) if not _FIXED.fullmatch(m)}


@dataclass(eq=False)
class Nest:
    """A loop nest over ``shape`` (``i0``, ``i1``, ... over its axes) whose innermost statements
    are ``stmts`` (stores, each writing its own elements) and, when ``total`` is ``(name,
    value)``, a sum of ``value`` over the nest into the scalar ``name``. ``extra`` holds the
    emitter's own names for it (accumulators, chunk buffers)."""

    shape: tuple
    stmts: list[str]
    total: tuple[str, str] | None = None
    extra: dict = field(default_factory=dict)

    def reads(self) -> set[str]:
        text = " ".join(self.stmts) + (self.total[1] if self.total else "")
        return names(text) | self.writes()

    def writes(self) -> set[str]:
        out = {_ASSIGN.match(s).group(1) for s in self.stmts}
        return out | ({self.total[0]} if self.total else set())

    def private(self) -> set[str]:
        """The emitter's names for it: its own to other nests (a fused nest renames a clash),
        but the serial accumulator ``acc`` is also what a contraction's statements share."""
        return {v for v in self.extra.values() if isinstance(v, str)}


def _root(s) -> object:
    return N if s == N else (s.owner, s.axis)


def _trim(s) -> int:
    return 0 if s == N else s.trim


def extents(group: list[Nest]) -> tuple:
    """The fused nest's extents: per axis, the member's with the smallest trim."""
    return tuple(min((m.shape[a] for m in group), key=_trim) for a in range(len(group[0].shape)))


def guards(member: Nest, ext: tuple, size) -> list[str]:
    """The conditions (``i0 < D0 - 1``) under which ``member`` runs in a nest over ``ext``;
    ``size`` prints a shape entry."""
    return [f"i{a} < {size(s).strip('()')}" for a, (s, e) in enumerate(zip(
        member.shape, ext, strict=True)) if _trim(s) > _trim(e)]


class _Raw:
    """Statements at depth 0 with the lines nested under them."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.mentions: set[str] = set()
        self.written: set[str] = set()
        for ln in lines:
            found = names(ln)
            self.mentions |= found
            head = ln.lstrip()
            m = _ASSIGN.match(ln)
            if m:
                self.written |= names(m.group(1))
            elif not head.startswith(("for ", "if ", "elif ", "else", "while ", "return ")):
                self.written |= found  # a call: it may write any array it is given

        view = _VIEW.fullmatch(lines[0])
        #: (view, base) when the statement names a view of another array
        self.view = view.groups() if view and len(lines) == 1 else None

    def reads(self) -> set[str]:
        return self.mentions

    def writes(self) -> set[str]:
        return self.written


class _Aliased:
    """A nest or statement seen with each view it mentions widened to the view's base."""

    def __init__(self, node, base: dict[str, str]) -> None:
        self.node = node
        self._writes = {base.get(x, x) for x in node.writes()} | node.writes()
        self._reads = {base.get(x, x) for x in node.reads()} | node.reads()

    def reads(self) -> set[str]:
        return self._reads

    def writes(self) -> set[str]:
        return self._writes

    def private(self) -> set[str]:
        return self.node.private()


def _aliased(nodes: list) -> list:
    """The nodes as dependences see them: where the body uses an array under two names (a view
    and its base, or two views of one base), both stand for the base."""
    base: dict[str, str] = {}
    for n in nodes:
        if isinstance(n, _Raw) and n.view:
            v, b = n.view
            base[v] = base.get(b, b)
    used: dict[str, set[str]] = {}  # a base -> its names the body uses (not to define views)
    for n in nodes:
        if not (isinstance(n, _Raw) and n.view):
            for x in n.reads() | n.writes():
                if x in base or x in base.values():
                    used.setdefault(base.get(x, x), set()).add(x)
    shared = {v: b for v, b in base.items() if len(used.get(b, ())) > 1}
    if not shared:
        return nodes
    return [n if isinstance(n, _Raw) and n.view else _Aliased(n, shared) for n in nodes]


def _blocks(items: list) -> list:
    """Nests as they are, lines in blocks of one depth-0 statement and what it nests."""
    out: list = []
    for it in items:
        if isinstance(it, Nest):
            out.append(it)
        elif it[:1] == " " or it.startswith(("else", "elif")):
            assert out and isinstance(out[-1], list), "a nest inside another statement"
            out[-1].append(it)
        else:
            out.append([it])
    return [_Raw(b) if isinstance(b, list) else b for b in out]


def _is_nest(node) -> bool:
    return isinstance(getattr(node, "node", node), Nest)


def _conflict(a, b) -> bool:
    """Whether ``a`` and ``b`` must keep their order: one writes a name the other mentions."""
    aw, ar, bw, br = a.writes(), a.reads(), b.writes(), b.reads()
    if _is_nest(a) != _is_nest(b):  # a nest's accumulator among raw lines
        own = (a if _is_nest(a) else b).private()
        if _is_nest(a):
            aw, ar = aw | own, ar | own
        else:
            bw, br = bw | own, br | own
    return bool(aw & br or bw & ar)


def schedule(items: list) -> list:
    """``items`` (lines at depth 0 or nested, and :class:`Nest` placeholders) as lines and
    lists of nests to print as one nest each, in an order that keeps every dependence."""
    nodes = _blocks(items)
    count = len(nodes)
    seen = _aliased(nodes)
    after: list[set[int]] = [set() for _ in nodes]  # i -> the items that depend on i
    for j in range(count):
        for i in range(j):
            if _conflict(seen[i], seen[j]):
                after[i].add(j)
    group = list(range(count))  # item -> the item leading its group
    members: dict[int, list[int]] = {k: [k] for k in range(count)}

    def reaches(src: int, dst: int) -> bool:
        """A chain of dependences from group ``src`` to group ``dst``."""
        seen, todo = {src}, [src]
        while todo:
            for m in members[todo.pop()]:
                for j in after[m]:
                    if group[j] == dst:
                        return True
                    if group[j] not in seen:
                        seen.add(group[j])
                        todo.append(group[j])
        return False

    for j, nest in enumerate(nodes):
        if not isinstance(nest, Nest) or not nest.shape:
            continue
        key = tuple(_root(s) for s in nest.shape)
        for lead in [k for k in members if k < j and isinstance(nodes[k], Nest)]:
            # (no chain runs back from j: the groups hold earlier items only)
            if tuple(_root(s) for s in nodes[lead].shape) != key or reaches(lead, j):
                continue
            members[lead].append(j)
            del members[j]
            group[j] = lead
            break
    # Kahn's order over the groups, the earliest available first
    need = {k: 0 for k in members}
    for i in range(count):
        for j in after[i]:
            if group[i] != group[j]:
                need[group[j]] += 1
    ready = sorted(k for k in members if not need[k])
    out: list = []
    done = 0
    while ready:
        k = ready.pop(0)
        done += 1
        if isinstance(nodes[k], Nest):
            out.append([nodes[m] for m in members[k]])
        else:
            out.extend(nodes[k].lines)
        for m in members[k]:
            for j in after[m]:
                if group[j] != k:
                    need[group[j]] -= 1
                    if not need[group[j]]:
                        ready.append(group[j])
        ready.sort()
    assert done == len(members), "a cycle of dependences among the fused nests"
    return out
