"""An array loss run as one pass over the samples: :class:`FusedKernel`.

A small array loss (:func:`symgrad.passes.fuse.fusable`: a linear or logistic model, a small
layer) is unrolled for one generic sample (:func:`symgrad.passes.fuse.unroll`) and compiled by
the sample-loop printer that scalar losses use: one loop computes the loss and every derivative
from a few locals per sample, instead of one loop or BLAS call per node and per derivative. The
kernel is a :class:`~symgrad.runtime.scalar.ScalarKernel` (its ``jit`` functions, its ``prange``
variant above ``PARALLEL_THRESHOLD`` samples, Dask columns, the compiled training loop) with the
array loss's face: ``params`` name the arrays, ``shapes`` give their shapes, ``pack``/``unpack``
and ``init`` work on them, and ``graph`` is the array expression it was built from.

With ``dtype="float32"`` it keeps the scalar path's float32 convention, not the array code's:
the data and each sample's arithmetic are float32 (``f.data_dtype``; float64 data are converted
once per call), summed in float32 over blocks of 1024 samples and the blocks in float64; ``x``,
the gradient, the HVP, the Hessian and the value are float64 (``x`` is rounded to float32
inside the sample loop). The float32 array code (``fuse=False``) instead takes and returns
float32 ``x`` and ``g`` (``f.dtype``).

>>> import numpy as np, symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> f = sg.compile(sg.mean((X @ w - y)**2))
>>> type(f).__name__, f.params, f.shapes, f.labels
('FusedKernel', ('w',), {'w': (2,)}, ('w[0]', 'w[1]'))
>>> float(f.value(f.pack(w=[1.0, 2.0]), X=np.array([[1.0, 1.0]]), y=np.array([3.0])))
0.0
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..ad.array import topo
from ..ad.derive import KinkPolicy
from ..distributed.detect import has_dask
from ..ir.graph import Node
from ..ir.problem import Problem
from .scalar import ScalarKernel

__all__ = ["FusedKernel", "flatten_rows"]


def flatten_rows(data: Mapping, shapes: Mapping[str, tuple]) -> dict:
    """``data`` with each NumPy array of several axes per sample (``shapes[name]``, the shape of
    one sample) checked and viewed as ``(N, k)`` rows, as the fused sample loop reads them."""
    data = dict(data)
    for name, shape in shapes.items():
        if len(shape) > 1 and name in data and not has_dask({name: data[name]}):
            a = np.asarray(data[name])
            if a.ndim != 1 + len(shape) or a.shape[1:] != shape:
                raise ValueError(f"data array '{name}' must have shape (N"
                                 f"{''.join(f', {k}' for k in shape)}), got {a.shape}")
            data[name] = a.reshape(a.shape[0], math.prod(shape))
    return data


class FusedKernel(ScalarKernel):
    """A small array loss compiled to one sample loop (see the module's docstring)."""

    _data_kind = "data array"

    def __init__(self, graph: Node, shapes: dict[str, tuple], problem: Problem, source: str,
                 path: Path, module: types.ModuleType, parallel: bool | None = None,
                 policy: KinkPolicy | None = None) -> None:
        super().__init__(problem, source, path, module, parallel, policy)
        #: The array expression the kernel was built from (its array terms, for a sum of index
        #: sums and array terms).
        self.graph: Node = graph
        #: The parameters in the order of x: arrays (their entries are the problem's leading
        #: scalars), scalars, then vectors of call-time length (``(None,)``).
        self.shapes = dict(shapes)
        self.params = tuple(f"{p}[:]" if s == (None,) else p for p, s in self.shapes.items())
        #: The shape of one sample of each data array of the graph.
        self.data_shapes = {n.name: tuple(int(s) for s in n.shape[1:]) for n in topo([graph])
                            if n.kind == "leaf" and n.role != "param"}
        self._rows = {n: s for n, s in self.data_shapes.items() if len(s) > 1}

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """As a scalar kernel's, with an ``(N, *shape)`` data array read as ``(N, k)`` rows
        (only a loss with such arrays pays for the look)."""
        if self._rows and data:
            data = flatten_rows(data, self._rows)
        return super().data_args(data, batch, scan=scan)

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return f"<symgrad.FusedKernel params=({ps}){data}: one pass over the samples>"

    def param_names(self, size: int | None = None) -> tuple[str, ...]:
        """One name per entry of x (``W[0, 1]``, ``v[3]``)."""
        return super().param_names(size if self.vectors else self.n_params)

    def _layout(self, size: int | None) -> list[tuple[str, tuple]]:
        if size is None or not self.vectors:
            return list(self.shapes.items())
        n = self.vector_length(size)
        return [(p, (n,) if s == (None,) else s) for p, s in self.shapes.items()]
