"""Loop nests printed after sibling fusion (:mod:`symgrad.passes.siblings`).

The emitter's element-wise stores and whole sums are :class:`~symgrad.passes.siblings.Nest`
placeholders while a body is written; at its end :func:`~symgrad.passes.siblings.schedule`
groups the independent ones over the same sizes, and each group prints as one nest over the
largest extents, every member under its guard, every sum into its own accumulator (a sum's
terms are added in the order its own nest would add them, so fusing does not change its bits).
"""

from __future__ import annotations

from ...passes.siblings import Nest, extents, guards, schedule

__all__ = ["Nests"]


class Nests:
    """The nest part of :class:`~symgrad.backend.numba.emit.Emitter` (a mixin: it uses the
    emitter's lines, sizes and loops)."""

    #: whether nests wait for the end of the body (to be fused) or print at once
    fusing = False

    def add(self, nest: Nest) -> None:
        """A loop nest: fused with its siblings at the end of the body, or printed now."""
        if self.fusing:
            self.lines.append(nest)
        else:
            self.lines.extend(self.fused([nest]))

    def fuse_from(self, start: int) -> None:
        """Print the nests from ``lines[start]`` on, fused where they may be."""
        out: list[str] = []
        for item in schedule(self.lines[start:]):
            out.extend(self.fused(item) if isinstance(item, list) else [item])
        self.lines[start:] = out
        self.fusing = False

    def inner(self, group: list[Nest], ext: tuple, accs: dict, depth: int) -> list[str]:
        """The members' innermost statements, each under its guard; a sum adds into
        ``accs[id(member)]``."""
        out = []
        for m in group:
            stmts = m.stmts + ([f"{accs[id(m)]} += {m.total[1]}"] if m.total else [])
            cond = guards(m, ext, self.size)
            if cond:
                out.append("    " * depth + f"if {' and '.join(cond)}:")
            out += ["    " * (depth + bool(cond)) + s for s in stmts]
        return out

    def fused(self, group: list[Nest]) -> list[str]:
        """One serial nest: the sums' accumulators, the loops, the results."""
        ext = extents(group)
        sums = [m for m in group if m.total]
        accs = {id(m): m.extra["acc"] if len(sums) == 1 else f"acc{k}"
                for k, m in enumerate(sums)}
        out = [f"{accs[id(m)]} = {self.acc0}" for m in sums]
        loops, d = self.loops(ext)
        out += loops + self.inner(group, ext, accs, d)
        return out + [f"{m.total[0]} = {self.narrow(accs[id(m)])}" for m in sums]
