"""Contractions in generated code: ``np.dot`` on 2-D views when the labels group as a matrix
product (SciPy's BLAS inside Numba), nested loops otherwise."""

from __future__ import annotations

from .graph import Contract

__all__ = ["Contractions"]


class Contractions:
    """The contraction part of :class:`~symgrad.arrays.emit.Emitter` (a mixin: it uses the
    emitter's names, sizes and element formulas)."""

    def node_contract(self, n: Contract, target) -> None:
        name = self.alloc(n, target)
        self.name[id(n)] = name
        (a, b), (la, lb, lo) = n.args, n.labels
        gemm = self.gemm(a, b, la, lb, lo, name)
        if gemm is not None:
            self.emit(gemm)
            return
        # loops over the output labels, then over the contracted ones
        red = [c for c in dict.fromkeys(la + lb) if c not in lo]
        size = dict(zip(la, a.shape, strict=True)) | dict(zip(lb, b.shape, strict=True))
        idx = {c: f"j{k}" for k, c in enumerate(dict.fromkeys(lo + "".join(red)))}
        d = 0
        for c in lo:
            self.emit(f"for {idx[c]} in range({self.size(size[c])}):", d)
            d += 1
        self.emit(f"acc = {self.zero}", d)
        for c in red:
            self.emit(f"for {idx[c]} in range({self.size(size[c])}):", d)
            d += 1
        ea = self.expr(a, tuple(idx[c] for c in la))
        eb = self.expr(b, tuple(idx[c] for c in lb))
        self.emit(f"acc += {ea} * {eb}", d)
        out = f"{name}[{', '.join(idx[c] for c in lo)}]" if lo else name
        self.emit(f"{out} = acc", len(lo))

    def gemm(self, a, b, la, lb, lo, out) -> str | None:
        """``np.dot`` on 2-D views when the labels group as a matrix product, else None."""
        k = [c for c in la if c in lb and c not in lo]
        m = [c for c in la if c not in lb]
        p = [c for c in lb if c not in la]
        if any(c in la and c in lb for c in lo) or len(lo) == 0:
            return None
        if "".join(m + p) == lo:
            first, second = (a, la, m), (b, lb, p)
        elif "".join(p + m) == lo:
            first, second = (b, lb, p), (a, la, m)
        else:
            return None
        x1 = self.matrix(*first, k, free_first=True)
        x2 = self.matrix(*second, k, free_first=False)
        if x1 is None or x2 is None:
            return None
        rows = self.prod([s for s, c in zip(first[0].shape, first[1], strict=True)
                          if c in first[2]])
        cols = self.prod([s for s, c in zip(second[0].shape, second[1], strict=True)
                          if c in second[2]])
        lead = sum(1 for c in lo if c in first[2])
        return f"np.dot({x1}, {x2}, {self.as2d(out, len(lo), lead, rows, cols)})"

    def matrix(self, node, labels, free, k, free_first: bool) -> str | None:
        """``node`` as a 2-D (free, k) or (k, free) view, transposed when its axes say so."""
        name = self.name[id(node)]
        fsz = self.prod([s for s, c in zip(node.shape, labels, strict=True) if c in free])
        ksz = self.prod([s for s, c in zip(node.shape, labels, strict=True) if c in k])
        if labels == "".join(free) + "".join(k):
            view, t = self.as2d(name, node.ndim, len(free), fsz, ksz), not free_first
        elif labels == "".join(k) + "".join(free):
            view, t = self.as2d(name, node.ndim, len(k), ksz, fsz), free_first
        else:
            return None
        return f"{view}.T" if t else view

    @staticmethod
    def as2d(name: str, ndim: int, lead: int, rows: str, cols: str) -> str:
        """``name`` as a 2-D array (a reshape only where the axes group)."""
        if ndim == 2 and lead == 1:
            return name
        return f"{name}.reshape(({rows}, {cols}))"


