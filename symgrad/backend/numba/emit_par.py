"""The parallel variant of a core function's body: the serial loops with their leading axis
under ``numba.prange``, in a shape whose result does not depend on the number of threads.

- element-wise loops (fills, zeroing, sums that keep the leading axis): each iteration writes
  its own elements, so the outer loop is a ``prange`` as it stands;
- a sum over the leading axis: a fixed number of chunks (:data:`SUM_CHUNKS`, or the axis's
  extent when smaller) of the axis, each summed serially into its own slot, the slots added in
  chunk order afterwards;
- a sum over the leading axis keeping later axes: one zeroed buffer per chunk (at most
  :data:`BUF_CHUNKS`, fewer when the buffers would outweigh the work), added in chunk order;
- a scatter (a gather's adjoint): the same with a copy of the target per chunk (at most
  :data:`SCATTER_CHUNKS`). Measured on a 1e6-sample factorisation: splitting the target's
  rows between threads instead (each reading every sample) loses 40% to mispredicted
  branches, and sorting the samples by row part loses more to scattered reads.

Chunk counts are functions of the sizes only, so 1, 2 or 64 threads give the same bits. The
function starts by calling the serial core when its largest loop nest has fewer than
:data:`PAR_WORK` elements (threads do not pay below that). BLAS calls stay outside the
``prange`` regions, so Numba's threads and BLAS's never run at the same time
(:mod:`symgrad.runtime.blas` gives both the same count).
"""

from __future__ import annotations

from ...ir.graph import Reduce, Scatter
from ...passes.siblings import Nest, extents
from .emit import Emitter

__all__ = ["BUF_CHUNKS", "PAR_WORK", "SCATTER_CHUNKS", "SUM_CHUNKS", "ParEmitter"]

#: Chunks of a sum over the leading axis (each a serial partial sum, added in chunk order).
SUM_CHUNKS = 64
#: At most this many per-chunk buffers of a scatter or of a sum keeping later axes.
BUF_CHUNKS = 16
#: At most this many chunks of a scatter's samples, each with its own copy of the target.
SCATTER_CHUNKS = 4
#: Elements in the largest loop nest below which the parallel variant runs the serial core.
PAR_WORK = 32768


class ParEmitter(Emitter):
    """An :class:`~symgrad.backend.numba.emit.Emitter` whose loops run over chunks in ``prange``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: the element counts (expressions) of the parallel loop nests
        self.work: list[str] = []
        self.acc = lambda: f"a_{self.new()}"

    def top(self, shape: tuple, axes: tuple | None = None) -> tuple[list, int]:
        self.work.append(self.prod(shape))
        return self.loops(shape, 0, axes, first=f"numba.prange({self.size(shape[0])})")

    def add(self, nest: Nest) -> None:
        self.work.append(self.prod(nest.shape))
        super().add(nest)

    def fused(self, group: list[Nest]) -> list[str]:
        """One nest whose leading axis runs in ``prange``: over its elements, or, when the
        group sums, over a fixed number of chunks (:data:`SUM_CHUNKS`, or the extent when
        smaller), each sum adding each chunk into its own slot, the slots added in chunk order
        afterwards (the chunks are a function of the sizes only)."""
        if not group[0].shape:
            return super().fused(group)
        sums, ext = [m for m in group if m.total], extents(group)
        if not sums:  # stores of their own elements: the leading axis in prange
            loops, d = self.loops(ext, 0, first=f"numba.prange({self.size(ext[0])})")
            return loops + self.inner(group, ext, {}, d)
        size, nc = self.size(ext[0]), sums[0].extra["nc"]
        out = [f"{nc} = min({SUM_CHUNKS}, {size})"]
        out += [f"{m.extra['part']} = np.empty({nc})" for m in sums]
        out.append(f"for c in numba.prange({nc}):")
        out += [f"    {m.extra['a']} = {self.acc0}" for m in sums]
        loops, d = self.loops(ext, 1, first=self.chunk(size, nc))
        out += loops + self.inner(group, ext, {id(m): m.extra["a"] for m in sums}, d)
        out += [f"    {m.extra['part']}[c] = {m.extra['a']}" for m in sums]
        for m in sums:
            acc = m.extra["acc"]
            out += [f"{acc} = {self.acc0}", f"for c in range({nc}):",
                    f"    {acc} += {m.extra['part']}[c]", f"{m.total[0]} = {self.narrow(acc)}"]
        return out

    def chunk(self, ext: str, nc: str) -> str:
        return f"range(c * {ext} // {nc}, (c + 1) * {ext} // {nc})"

    def buffers(self, nc: str, shape: tuple, work: str, total: str) -> str:
        """``nc`` (chunks of the leading axis) and one buffer of ``shape`` per chunk."""
        buf = self.new()
        self.emit(f"{nc} = max(1, min({BUF_CHUNKS}, {work} // (8 * ({total}))))")
        dtype = "" if self.wide else self.dtype  # float32 kernels sum in float64
        self.emit(f"{buf} = np.empty(({nc}, {''.join(f'{self.size(s)}, ' for s in shape)})"
                  f"{dtype})")
        return buf

    def zero_buf(self, buf: str, shape: tuple, depth: int) -> None:
        loops, d = self.loops(shape, depth)
        self.lines.extend(loops)
        self.emit(f"{buf}[c, {', '.join(self.idx(range(len(shape))))}] = 0.0", d)

    def add_chunks(self, name: str, buf: str, nc: str, shape: tuple, into: bool = False) -> None:
        """``name[...] = buf[0, ...] + buf[1, ...] + ...`` (``into``: ``name[...] + buf[0,
        ...] + ...``), in chunk order (float32 kernels: summed in float64, rounded once)."""
        idx = ", ".join(self.idx(range(len(shape))))
        loops, d = self.top(shape)
        self.lines.extend(loops)
        s = self.acc()
        first = f"{name}[{idx}]" if into else self.acc0
        self.emit(f"{s} = {f'np.float64({first})' if into and self.wide else first}", d)
        self.emit(f"for c in range({nc}):", d)
        self.emit(f"{s} += {buf}[c, {idx}]", d + 1)
        self.emit(f"{name}[{idx}] = {self.narrow(s)}", d)

    def reduce_sum(self, n: Reduce, target) -> None:
        (z,) = n.args
        leading = n.keep == tuple(range(len(n.keep)))
        if z.ndim == 0 or (leading and n.ndim) or (not leading and 0 in n.keep):
            return super().reduce_sum(n, target)  # the leading axis is kept: disjoint writes
        value = self.expr(z, self.idx(range(z.ndim)))
        ext, nc = self.size(z.shape[0]), self.new()
        if leading:  # a sum of everything: one partial sum per chunk (see fused)
            name, part, a, acc = self.new(), self.new(), self.acc(), self.acc()
            self.name[id(n)] = name
            self.add(Nest(z.shape, [], total=(name, value),
                          extra={"nc": nc, "part": part, "a": a, "acc": acc}))
            return None
        self.work.append(self.prod(z.shape))
        first = self.chunk(ext, nc)
        # later axes kept, the leading one summed: one buffer of the kept shape per chunk
        name = self.alloc(n, target)
        self.name[id(n)] = name
        buf = self.buffers(nc, n.shape, self.prod(z.shape), self.prod(n.shape))
        self.emit(f"for c in numba.prange({nc}):")
        self.zero_buf(buf, n.shape, 1)
        loops, d = self.loops(z.shape, 1, first=first)
        self.lines.extend(loops)
        self.emit(f"{buf}[c, {', '.join(self.idx(n.keep))}] += {value}", d)
        self.add_chunks(name, buf, nc, n.shape)
        return None

    def scatter_loop(self, group: list[tuple[str, Scatter]]) -> None:
        """The scatters of ``group`` over :data:`SCATTER_CHUNKS` chunks of the samples (fewer
        when the buffers would outweigh the work), each chunk into its own zeroed buffers, read
        in sample order; the buffers are then added into the targets in chunk order."""
        arg = group[0][1].args[0]
        idx = self.idx(range(arg.ndim))
        ext, nc = self.size(arg.shape[0]), self.new()
        work = self.prod(arg.shape)
        self.work.append(work)
        total = " + ".join(self.prod(sc.shape) for _, sc in group)
        self.emit(f"{nc} = max(1, min({SCATTER_CHUNKS}, {work} // (4 * ({total}))))")
        bufs = [self.new() for _ in group]
        dtype = "" if self.wide else self.dtype  # float32 kernels sum in float64
        for buf, (_, sc) in zip(bufs, group, strict=True):
            self.emit(f"{buf} = np.empty(({nc}, "
                      f"{''.join(f'{self.size(s)}, ' for s in sc.shape)}){dtype})")
        self.emit(f"for c in numba.prange({nc}):")
        for buf, (_, sc) in zip(bufs, group, strict=True):
            self.zero_buf(buf, sc.shape, 1)
        loops, d = self.loops(arg.shape, 1, first=self.chunk(ext, nc))
        self.nest(loops, [f"{buf}[c, {', '.join((self.expr(sc.args[1], idx[:1]), *idx[1:]))}] "
                          f"+= {self.expr(sc.args[0], idx)}"
                          for buf, (_, sc) in zip(bufs, group, strict=True)], d)
        for buf, (name, sc) in zip(bufs, group, strict=True):
            if self.wide:  # the target and every chunk's buffer summed in float64, rounded once
                self.add_chunks(name, buf, nc, sc.shape, into=True)
                continue
            self.work.append(self.prod(sc.shape))
            at = ", ".join(self.idx(range(sc.ndim)))
            self.emit(f"for i0 in numba.prange({self.size(sc.shape[0])}):")
            self.emit(f"for c in range({nc}):", 1)
            inner, d = self.loops(sc.shape[1:], 2, tuple(range(1, sc.ndim)))
            self.lines.extend(inner)
            self.emit(f"{name}[{at}] += {buf}[c, {at}]", d)
