"""A loss that is a sum of index sums and array terms: :class:`SumKernel` (kind ``"sum"``).

The two parts compile on their own paths (the index sums to a
:class:`~symgrad.runtime.scalar.ScalarKernel`, the array terms to an
:class:`~symgrad.ArrayKernel`); this kernel gives them one packed ``x``:

    x = [array parameters, flattened, in the array loss's order (f.shapes),
         then the scalar parameters only the index sums read,
         then each vector of the index sums (call-time length n each)]

A scalar parameter both parts read (a shape-``()`` array leaf and a scalar of the index sums)
has one slot, among the array parameters. Value, gradient, HVP and Hessian are the sums of the
parts' results scattered into that ``x``. Data are passed by name; each part takes its own
(``batch=`` selects the same rows of every per-sample column). The training loops run this
kind through its ``value_and_grad`` (the Python loop).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..distributed.detect import has_dask
from .argcheck import as_out, as_vector
from .base import Kernel
from .datacheck import check_names

__all__ = ["SumKernel"]


class SumKernel(Kernel):
    """The sum of an index-sum kernel (``scalar``) and an array kernel (``array``) on one ``x``."""

    kind: str = "sum"

    def __init__(self, scalar, array) -> None:
        #: The parts: the index sums' ScalarKernel and the array terms' ArrayKernel.
        self.scalar, self.array = scalar, array
        shared = sorted(set(scalar.data_names) & set(array.data_names))
        for c in shared:  # one column both read per sample is fine; other layouts clash
            if not (c in scalar.sampled and c in array.sampled and scalar._widths[c] is None
                    and array.data_shapes[c] == ()):
                raise ValueError(f"data '{c}' is read by both the index sums and the array "
                                 "terms in different layouts (element-wise, a component, "
                                 "an array per sample): declare two names")
        na = array.n_params
        sp_names = scalar.problem.param_names
        own = [p for p in sp_names if p not in array.shapes]
        for p in sp_names:
            if p in array.shapes and array.shapes[p] != ():
                raise ValueError(f"'{p}' is a scalar in the index sums but has shape "
                                 f"{array.shapes[p]} in the array terms: use one declaration")
        offsets = dict(zip(array.params, np.cumsum([0, *(int(np.prod(s)) for s in
                                                         array.shapes.values())]),
                           strict=False))
        slot = {p: int(offsets[p]) for p in sp_names if p in array.shapes}
        slot.update({p: na + k for k, p in enumerate(own)})
        #: Where each scalar parameter of the index sums sits in x.
        self._sidx = np.array([slot[p] for p in sp_names], dtype=np.int64)
        self._na, self._nfix = na, na + len(own)
        self.vectors: tuple[str, ...] = scalar.vectors
        self.params: tuple[str, ...] = (*array.params, *own,
                                        *(f"{v}[:]" for v in self.vectors))
        self.n_params: int | None = None if self.vectors else self._nfix
        self.shapes: dict[str, tuple] = {**array.shapes, **dict.fromkeys(own, ()),
                                         **dict.fromkeys(self.vectors, (None,))}
        self.data_names: tuple[str, ...] = (
            *array.data_names, *(c for c in scalar.data_names if c not in shared))
        #: The per-sample data of both parts (``batch=`` picks the same rows of each).
        self.sampled: tuple[str, ...] = (
            *array.sampled, *(c for c in scalar.sampled if c not in shared))
        self.analytic: bool = bool(scalar.analytic and array.analytic)
        self._scan_always = bool(scalar._scan_always or array._scan_always)
        self.expr = (scalar.expr, array.expr)

    def __repr__(self) -> str:
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return f"<symgrad.SumKernel params=({', '.join(self.params)}){data}>"

    def formulas(self) -> str:
        """Both parts' formulas: the index sums', then the array terms'."""
        return (f"# index sums (x entries {', '.join(self.scalar.params)})\n"
                f"{self.scalar.formulas()}\n# array terms\n{self.array.formulas()}")

    def vector_length(self, size: int) -> int:
        """The vectors' length n for an x of ``size`` entries."""
        m = len(self.vectors)
        r = size - self._nfix
        if r < m or r % m:
            raise ValueError(f"x must hold {self._nfix} fixed entries then {m} vector(s) of one "
                             f"common length n >= 1 ({', '.join(self.params)}), got {size} "
                             "entries")
        return r // m

    def _layout(self, size: int | None) -> list[tuple[str, tuple]]:
        if size is None or not self.vectors:
            return list(self.shapes.items())
        n = self.vector_length(size)
        return [(p, (n,) if s == (None,) else s) for p, s in self.shapes.items()]

    # -- the hooks of Kernel ------------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        n = self.n_params if size is None else size
        x = as_vector(x, what, self.params, n)
        if n is None:
            self.vector_length(x.shape[0])
        return x

    def _out(self, out, shape: tuple, what: str = "out", inputs=()) -> np.ndarray:
        return as_out(out, shape, what, inputs=inputs)

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """``(scalar part's args, array part's args)``: each part validates its own data."""
        data = dict(data or {})
        if has_dask(data):
            raise NotImplementedError("Dask columns work with a loss that is an index sum or an "
                                      "array loss, not yet with their sum: compute the data "
                                      "into NumPy arrays")
        check_names(data, self.data_names, "data")
        if batch is not None and not self.sampled:
            raise TypeError("batch= selects samples of per-sample data; this loss has none")
        sd = {k: data[k] for k in self.scalar.data_names}
        ad = {k: data[k] for k in self.array.data_names}
        return (self.scalar.data_args(sd, batch if self.scalar.sampled else None, scan=scan),
                self.array.data_args(ad, batch if self.array.sampled else None, scan=scan))

    def _columns(self, args: tuple) -> dict[str, np.ndarray]:
        return {**self.array._columns(args[1]), **self.scalar._columns(args[0])}

    def _name_non_finite(self, data: Mapping, batch=None) -> None:
        self.array._name_non_finite({k: data[k] for k in self.array.data_names},
                                    batch if self.array.sampled else None)
        self.scalar._name_non_finite({k: data[k] for k in self.scalar.data_names},
                                     batch if self.scalar.sampled else None)

    def _sel(self, size: int) -> np.ndarray:
        """The entries of x the index sums read, in their kernel's order."""
        return np.concatenate([self._sidx, np.arange(self._nfix, size, dtype=np.int64)])

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The index sums' x (their scalars, then the vectors: a slice) and the array terms'."""
        return (np.concatenate([x[self._sidx], x[self._nfix:]]),
                np.ascontiguousarray(x[:self._na]))

    def _scatter(self, out: np.ndarray, ps: np.ndarray, pa: np.ndarray) -> None:
        """``out`` = the parts' vectors (gradients, HVPs) summed into x's layout."""
        na, nf, ns = self._na, self._nfix, self._sidx.shape[0]
        out[:na] = pa
        out[na:nf] = 0.0
        out[self._sidx] += ps[:ns]
        out[nf:] = ps[ns:]

    def _run(self, name: str, x, args: tuple, *outs):
        sa, aa = args
        s, a = self.scalar, self.array
        xs, xa = self._split(x)
        if name == "value":
            return s._run("value", xs, sa) + a._run("value", xa, aa)
        if name == "value_and_grad":
            gs, ga = np.empty_like(xs), np.empty_like(xa)
            v = s._run(name, xs, sa, gs) + a._run(name, xa, aa, ga)
            self._scatter(outs[0], gs, ga)
            return v
        if name == "hvp":
            v, out = outs
            vs, va = self._split(v)
            hs, ha = np.empty_like(xs), np.empty_like(xa)
            s._run(name, xs, sa, vs, hs)
            a._run(name, xa, aa, va, ha)
            self._scatter(out, hs, ha)
            return None
        if name == "hessian":
            out, = outs
            sel, na = self._sel(x.shape[0]), self._na
            Hs, Ha = np.empty((xs.shape[0],) * 2), np.empty((na, na))
            s._run(name, xs, sa, Hs)
            a._run(name, xa, aa, Ha)
            out[:] = 0.0
            out[:na, :na] = Ha
            out[np.ix_(sel, sel)] += Hs
            return None
        raise AttributeError(f"a sum kernel has no {name!r}")

    def _run_complex(self, x, args: tuple) -> complex:
        xs = np.concatenate([x[self._sidx], x[self._nfix:]])
        return (self.scalar._run_complex(xs, args[0])
                + self.array._run_complex(np.ascontiguousarray(x[:self._na]), args[1]))
