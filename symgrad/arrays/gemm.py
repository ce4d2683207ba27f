"""Contractions in generated code: a BLAS ``gemm`` on 2-D views when the labels group as a
matrix product (SciPy's BLAS inside Numba), nested loops otherwise.

The product is printed as ``_gemm(a, b, out)``, an intrinsic (:data:`GEMM_HELPER`, written into
modules that use it) that calls Numba's own gemm wrapper, the one behind ``np.dot``, without
``np.dot``'s shape checks and matrix-vector branches: Numba compiles ``np.dot`` anew for every
layout of its operands (about 0.15 s each, cold), and an MLP's gradient uses three.
"""

from __future__ import annotations

from .graph import Contract

__all__ = ["GEMM_HELPER", "Contractions"]


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
        """``_gemm`` (out = a @ b) on 2-D views when the labels group as a matrix product,
        else None."""
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
        return f"_gemm({x1}, {x2}, {self.as2d(out, len(lo), lead, rows, cols)})"

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




GEMM_HELPER = '''
try:  # Numba's gemm wrapper (the one np.dot calls), called directly
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic as _intrinsic
    from numba.np import linalg as _linalg

    _linalg.call_xxgemm, _linalg.make_contiguous, _linalg.check_c_int  # noqa: B018
except (ImportError, AttributeError):  # another Numba: np.dot, the same product
    _intrinsic = None

if _intrinsic is not None:
    @_intrinsic
    def _gemm(typingctx, a, b, out):
        """out = a @ b through BLAS: 2-D a and b, out C-contiguous with their sizes."""
        if not (a.ndim == b.ndim == out.ndim == 2 and out.layout == "C"
                and a.dtype == b.dtype == out.dtype):
            return None

        def codegen(context, builder, sig, args):
            _linalg.ensure_blas()
            with _linalg.make_contiguous(context, builder, sig, args) as (sig, args):
                x, y, o = (context.make_array(t)(context, builder, v)
                           for t, v in zip(sig.args, args))
                xs, ys, zs = (_cgutils.unpack_tuple(builder, v.shape) for v in (x, y, o))
                for size in (xs[0], xs[1], ys[1]):
                    _linalg.check_c_int(context, builder, size)
                zero = context.get_constant(numba.types.intp, 0)
                empty = builder.or_(builder.icmp_signed("==", xs[0], zero), builder.or_(
                    builder.icmp_signed("==", xs[1], zero), builder.icmp_signed("==", ys[1], zero)))
                with builder.if_else(empty, likely=False) as (then, otherwise):
                    with then:
                        _cgutils.memset(builder, o.data, builder.mul(o.itemsize, o.nitems), 0)
                    with otherwise:
                        _linalg.call_xxgemm(context, builder, sig.args[0], xs, x.data,
                                            sig.args[1], ys, y.data, sig.args[2], zs, o.data)
            return context.get_dummy_value()

        return numba.types.none(a, b, out), codegen
else:
    @numba.njit(cache=True)
    def _gemm(a, b, out):
        np.dot(a, b, out)
'''
