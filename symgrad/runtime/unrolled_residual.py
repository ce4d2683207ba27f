"""Array residuals fused into one sample loop: :class:`FusedArrayResiduals`.

A small array residual (``W @ X + b - Y``, ``tanh(W @ X + b) - Y``: at most
:data:`~symgrad.passes.fuse.MAX_PARAMS` entries of ``x``, small per-sample arrays) is unrolled
for one generic sample (:func:`symgrad.passes.fuse.unroll`) into ``m`` scalar residuals in one
symbol per entry of ``x`` and the data arrays' components (``X[:, j]``), and compiled as
residuals written per sample are: the residual module, whose ``normal`` sums ``JᵀJ``, ``Jᵀr``
and ``rᵀr`` in one pass over the samples (blocks of 256 samples added with Neumaier
compensation), J never stored. The kernel has the face of
:class:`~symgrad.runtime.array_residual.ArrayResiduals`: ``params`` one label per entry of
``x``, ``shapes``/``pack``/``unpack``, ``m`` and ``shape`` per sample, data arrays by name with
one row per sample (an ``(N, 2, 2)`` array is read as ``(N, 4)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ..ad.derive import KinkPolicy
from ..distributed.detect import has_dask
from ..ir.residual_problem import ResidualProblem
from .fused import flatten_rows
from .residual import ResidualKernel

__all__ = ["FusedArrayResiduals"]


class FusedArrayResiduals(ResidualKernel):
    """Per-sample residual vectors of a small array model, compiled as one fused sample loop:
    a :class:`~symgrad.runtime.residual.ResidualKernel` (every method, robust loss, bound,
    weight and statistic of :func:`symgrad.least_squares`) with ``ArrayResiduals``' face.
    Dask arrays bind to the array lowering (``array()``), which runs its block pass per
    chunk with row scales (robust losses, weights)."""

    _data_kind = "data array"
    #: The lowering: the fused sample loop (``ArrayResiduals.fused`` is False).
    fused: bool = True

    def __init__(self, problem: ResidualProblem, source: str, path: Path, module,
                 policy: KinkPolicy | None = None, *, expr=None,
                 shapes: Mapping[str, tuple] | None = None,
                 data_shapes: Mapping[str, tuple] | None = None,
                 array: Callable[[], ResidualKernel] | None = None,
                 parallel: bool | None = None) -> None:
        super().__init__(problem, source, path, module, policy, parallel)
        #: The array residual (one array per sample).
        self.expr = expr
        #: Each parameter's shape (``x`` packs them flattened, in this order).
        self.shapes = dict(shapes or {})
        #: Each data array's shape per sample (an array is passed as ``(N, *shape)``).
        self.data_shapes: dict[str, tuple] = dict(data_shapes or {})
        #: The residual's shape per sample (``m`` is its size).
        self.shape: tuple[int, ...] = tuple(int(s) for s in
                                            getattr(expr, "shape", ("N", self.m))[1:])
        self._array, self._array_kernel = array, None

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        return (f"<symgrad.FusedArrayResiduals params=({ps}), m={self.m} (shape {self.shape}), "
                f"data=({', '.join(self.data_names)}), one fused sample loop at {self.path}>")

    def array(self) -> ResidualKernel:
        """The same residual by the array lowering (compiled on first use)."""
        if self._array_kernel is None:
            if self._array is None:
                raise TypeError("this kernel was built without its array lowering")
            self._array_kernel = self._array()
        return self._array_kernel

    @property
    def model(self):
        """The compiled model whose outputs are the residuals (the array lowering's)."""
        return self.array().model

    def bind(self, **data):
        if has_dask(data):  # the array lowering's Dask pass takes row scales per chunk
            return self.array().bind(**data)
        return super().bind(**data)

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """The data arrays as ``(N,)``/``(N, k)`` float64 columns in :attr:`data_names` order
        (an ``(N, *shape)`` array flattened per sample)."""
        data = flatten_rows(data or {}, self.data_shapes)
        try:
            return super().data_args(data, batch, scan=scan)
        except ValueError as exc:  # named as ArrayResiduals names them
            if not str(exc).startswith("data column '"):
                raise
            raise ValueError("data array" + str(exc)[len("data column"):]) from None
