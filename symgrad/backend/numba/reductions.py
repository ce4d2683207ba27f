"""Reductions of the array emitter: max, logsumexp and sums along axes.

Float32 kernels (:attr:`Emitter.wide <symgrad.backend.numba.emit.Emitter>`) sum in float64
and round once, and keep a logsumexp in float64, so a mean over N samples keeps float32
accuracy and ``z - logsumexp(z)`` is not rounded at the magnitude of ``z``.
"""

from __future__ import annotations

from ...ir.graph import Reduce
from .nests import Nest

__all__ = ["Reductions"]


class Reductions:
    """The reduction part of :class:`~symgrad.backend.numba.emit.Emitter` (a mixin: it uses the
    emitter's buffers, loops and lines)."""

    def wide_buffer(self, shape: tuple) -> str:
        """A zeroed float64 buffer of ``shape`` (a float32 kernel's sums)."""
        acc = self.new()
        self.emit(f"{acc} = np.empty({self.shape(shape)})")
        self.set_all(acc, shape, "0.0")
        return acc

    def node_reduce(self, n: Reduce, target) -> None:
        if n.op == "sum":
            return self.reduce_sum(n, target)
        (z,) = n.args
        src = self.expr(z, self.idx(range(z.ndim)))
        par = n.keep[:1] == (0,)  # one kept element per leading index: disjoint writes
        loops, d = self.top(z.shape) if par else self.loops(z.shape)
        kept, kd = self.top(n.shape, n.keep) if par else self.loops(n.shape, 0, n.keep)

        def at(name: str) -> str:
            return f"{name}[{', '.join(self.idx(n.keep))}]" if n.ndim else name

        # the running maximum (of the real part, for complex steps) of every kept element
        m = self.alloc(n, target) if n.op == "max" else self.new()
        if n.ndim:
            if n.op != "max":  # the maximum of real parts is real, for complex steps too
                mtype = "" if self.cplx else self.dtype
                self.emit(f"{m} = np.empty({self.shape(n.shape)}{mtype})")
            self.set_all(m, n.shape, "-np.inf")
        else:
            self.emit(f"{m} = -np.inf")
        self.lines.extend(loops)
        self.emit(f"{at(m)} = max({at(m)}, {src}{'.real' if self.cplx else ''})", d)
        if n.op == "max":
            self.name[id(n)] = m
            return
        # float32 kernels: the sum and the logsumexp in float64, so that z - logsumexp(z) (a
        # log_softmax) is not rounded at the magnitude of z first (1e-5 off at logits of 1e3)
        if self.wide:
            s = self.wide_buffer(n.shape) if n.ndim else self.new()
        else:
            s = self.alloc(n, None, zero=True) if n.ndim else self.new()
        if not n.ndim:
            self.emit(f"{s} = {self.acc0}")
        self.lines.extend(loops)
        self.emit(f"if not math.isinf({at(m)}):", d)
        self.emit(f"{at(s)} += {self.lib}.exp({src} - {at(m)})", d + 1)
        if self.wide and target is None and n.ndim:
            out = self.new()
            self.emit(f"{out} = np.empty({self.shape(n.shape)})")
        else:
            out = self.alloc(n, target)
        self.lines.extend(kept)
        self.emit(f"{at(out)} = {at(m)} + {self.lib}.log({at(s)}) if not math.isinf({at(m)}) "
                  f"else {at(m)}", kd)
        self.name[id(n)] = out

    def narrow(self, acc: str) -> str:
        """An accumulator's value in the kernel's type (float32 kernels sum in float64)."""
        return f"np.float32({acc})" if self.wide else acc

    def reduce_sum(self, n: Reduce, target) -> None:
        """A sum along axes; float32 kernels accumulate in float64 and round once at the end,
        so a mean over N samples keeps float32 accuracy (see :attr:`wide`)."""
        (z,) = n.args
        value = self.expr(z, self.idx(range(z.ndim)))
        leading = n.keep == tuple(range(len(n.keep)))
        name = self.alloc(n, target, zero=not leading and not self.wide)
        self.name[id(n)] = name
        at = f"[{', '.join(self.idx(n.keep))}]"
        if leading and not n.ndim:  # a sum of everything
            self.add(Nest(z.shape, [], total=(name, value), extra={"acc": self.acc()}))
            return
        if leading:
            # kept axes lead: accumulate in a scalar, store once per kept element
            outer, d = self.top(n.shape)
            self.lines.extend(outer)
            acc = self.acc()
            self.emit(f"{acc} = {self.acc0}", d)
            inner, d2 = self.loops(z.shape[len(n.keep):], d, tuple(range(len(n.keep), z.ndim)))
            self.lines.extend(inner)
            self.emit(f"{acc} += {value}", d2)
            self.emit(f"{name}{at} = {self.narrow(acc)}", d)
            return
        acc = name
        if self.wide:  # a float64 buffer of the kept shape, rounded into name at the end
            acc = self.wide_buffer(n.shape)
        self.add(Nest(z.shape, [f"{acc}{at} += {value}"]))
        if self.wide:
            idx = self.idx(range(n.ndim))
            loops, d = self.loops(n.shape)
            self.lines.extend(loops)
            self.emit(f"{name}[{', '.join(idx)}] = np.float32({acc}[{', '.join(idx)}])", d)
