"""Contractions in generated code: BLAS on 2-D views when the labels group as a matrix product
(SciPy's BLAS inside Numba), nested loops otherwise.

The product is printed as ``_gemm(a, b, out)``, a function of the module (:data:`GEMM_HELPER`,
written into modules that use it) that calls Numba's own BLAS entry points, the ones behind
``np.dot``, with the transpose flag and leading dimension each operand's strides call for: a
transposed view, a Fortran-ordered array or a view of a wider array is read where it lies, never
copied (a copy of a 5,000 x 500 data matrix per call made a logistic regression 2-5x NumPy), and a
vector side goes to ``gemv`` (``gemm`` with one column packs the whole matrix first: 2-3x slower).
``np.dot`` itself is not used: Numba compiles it anew for every layout of its operands (about
0.15 s each, cold), and an MLP's gradient uses three. For the same reason ``_gemm`` is inlined
where it is called and hands any-layout views (``a[:, :]``) to ``_gemm_any``, which holds the
BLAS calls and is compiled once per dtype (compiled per layout, it cost 0.5 s of the 3 s cold
build of a 784-512-10 MLP).
"""

from __future__ import annotations

from ...ir.graph import Contract

__all__ = ["GEMM_HELPER", "Contractions"]


class Contractions:
    """The contraction part of :class:`~symgrad.backend.numba.emit.Emitter` (a mixin: it uses the
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
        self.emit(f"acc = {self.acc0}", d)
        for c in red:
            self.emit(f"for {idx[c]} in range({self.size(size[c])}):", d)
            d += 1
        ea = self.expr(a, tuple(idx[c] for c in la))
        eb = self.expr(b, tuple(idx[c] for c in lb))
        self.emit(f"acc += {ea} * {eb}", d)
        out = f"{name}[{', '.join(idx[c] for c in lo)}]" if lo else name
        self.emit(f"{out} = {self.narrow('acc')}", len(lo))

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
try:  # Numba's BLAS entry points (the ones np.dot calls), called with explicit strides
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic as _intrinsic
    from numba.np import linalg as _linalg

    (_linalg.ensure_blas, _linalg.make_constant_slot, _linalg.get_blas_kind,  # noqa: B018
     _linalg.check_blas_return, _linalg.ll_void_p)
except (ImportError, AttributeError):  # another Numba: np.dot, the same product
    _intrinsic = None

if _intrinsic is not None:
    def _blas_call(name, order):
        """Codegen of a call of Numba's ``numba_xx<name>``: ``order`` lists its arguments after
        the kind, as (what, argument index): a flag (True: "t", False: "n"), an int, an array
        (its data pointer), or the constants alpha = 1 and beta = 0."""

        def codegen(context, builder, sig, args):
            _linalg.ensure_blas()
            dtype = next(t.dtype for t in sig.args if isinstance(t, numba.types.Array))
            slot = {w: _linalg.make_constant_slot(context, builder, dtype, v)
                    for w, v in (("alpha", 1.0), ("beta", 0.0))}
            call = [_ir.Constant(_ir.IntType(8), ord(_linalg.get_blas_kind(dtype)))]
            for what, i in order:
                ty, v = (sig.args[i], args[i]) if i >= 0 else (None, None)
                if what == "flag":
                    v = context.cast(builder, v, ty, numba.types.boolean)
                    call.append(builder.select(v, _ir.Constant(_ir.IntType(8), ord("t")),
                                               _ir.Constant(_ir.IntType(8), ord("n"))))
                elif what == "int":
                    call.append(context.cast(builder, v, ty, numba.types.intp))
                elif what == "array":
                    data = context.make_array(ty)(context, builder, v).data
                    call.append(builder.bitcast(data, _linalg.ll_void_p))
                else:
                    call.append(builder.bitcast(slot[what], _linalg.ll_void_p))
            fnty = _ir.FunctionType(_ir.IntType(32), [c.type for c in call])
            fn = _cgutils.get_or_insert_function(builder.module, fnty, name)
            _linalg.check_blas_return(context, builder, builder.call(fn, call))
            return context.get_dummy_value()

        return codegen

    def _one_dtype(*arrays):
        return all(isinstance(a, numba.types.Array) and a.dtype == arrays[0].dtype
                   for a in arrays)

    @_intrinsic
    def _xgemm(typingctx, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
        """Column-major BLAS gemm: c (m x n, leading dimension ldc) = op(a) @ op(b)."""
        if not _one_dtype(a, b, c):
            return None
        order = [("flag", 0), ("flag", 1), ("int", 2), ("int", 3), ("int", 4), ("alpha", -1),
                 ("array", 5), ("int", 6), ("array", 7), ("int", 8), ("beta", -1),
                 ("array", 9), ("int", 10)]
        return (numba.types.none(ta, tb, m, n, k, a, lda, b, ldb, c, ldc),
                _blas_call("numba_xxgemm", order))

    @_intrinsic
    def _xgemv(typingctx, t, m, n, a, lda, x, y):
        """Column-major BLAS gemv: y = op(a) @ x, a (m x n, leading dimension lda); x and y
        unit-stride."""
        if not _one_dtype(a, x, y):
            return None
        order = [("flag", 0), ("int", 1), ("int", 2), ("alpha", -1), ("array", 3), ("int", 4),
                 ("array", 5), ("beta", -1), ("array", 6)]
        return numba.types.none(t, m, n, a, lda, x, y), _blas_call("numba_xxgemv", order)

    @numba.njit(cache=True, no_cfunc_wrapper=True, inline='always')
    def _layout(r, c, sr, sc):
        """How BLAS reads an r x c operand with element strides (sr, sc): (row-major, leading
        dimension), the dimension 0 when neither axis is unit-stride."""
        if (c == 1 or sc == 1) and (r == 1 or sr >= c):
            return True, sr if r > 1 else c
        if (r == 1 or sr == 1) and (c == 1 or sc >= r):
            return False, sc if c > 1 else r
        return True, 0

    @numba.njit(cache=True, no_cfunc_wrapper=True, inline='always')
    def _gemm(a, b, out):
        """out = a @ b through BLAS: each operand read in place, with the transpose flag its
        strides call for (gemv when one side is a vector); out C-contiguous (m x n). The
        operands are passed on as any-layout views (``[:, :]``), so that one compiled
        :func:`_gemm_any` serves C, Fortran and transposed operands alike."""
        _gemm_any(a[:, :], b[:, :], out)

    @numba.njit(cache=True, no_cfunc_wrapper=True)
    def _gemm_any(a, b, out):
        """:func:`_gemm` of operands of any layout. Only an operand with no unit-stride axis
        (never one the array kernels make) is copied."""
        m, k = a.shape
        n = b.shape[1]
        if m == 0 or n == 0 or k == 0:
            out[...] = 0  # BLAS writes every element of out otherwise (beta = 0: never read)
            return
        if m > 2147483647 or n > 2147483647 or k > 2147483647:
            raise ValueError("a matrix product is too large for BLAS (a size above 2**31 - 1)")
        size = a.itemsize
        ra, lda = _layout(m, k, a.strides[0] // size, a.strides[1] // size)
        if lda == 0:
            a = a.copy()
            ra, lda = True, k
        rb, ldb = _layout(k, n, b.strides[0] // size, b.strides[1] // size)
        if ldb == 0:
            b = b.copy()
            rb, ldb = True, n
        if n == 1 and (k == 1 or b.strides[0] == size):  # out[:, 0] = a @ b[:, 0]
            if ra:
                _xgemv(True, k, m, a, lda, b, out)
            else:
                _xgemv(False, m, k, a, lda, b, out)
        elif m == 1 and (k == 1 or a.strides[1] == size):  # out[0] = b.T @ a[0]
            if rb:
                _xgemv(False, n, k, b, ldb, a, out)
            else:
                _xgemv(True, k, n, b, ldb, a, out)
        else:  # column-major: out.T (n x m) = op(b) @ op(a)
            _xgemm(not rb, not ra, n, m, k, b, ldb, a, lda, out, n)
else:
    @numba.njit(cache=True, no_cfunc_wrapper=True)
    def _gemm(a, b, out):
        np.dot(a, b, out)
'''
