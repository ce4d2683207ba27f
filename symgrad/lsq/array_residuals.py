"""Least squares on array models: per-sample residual vectors, ``W @ X + b - Y``.

An array expression that keeps the sample axis (shape ``(N, *shape)``) is a residual with
``m = prod(shape)`` entries per sample, flattened sample-major and in C order within a sample
(sample ``i`` owns rows ``i*m .. i*m+m-1``). It compiles as a model
(:func:`symgrad.arrays.model.compile_model`: the generated ``predict``, ``jvp`` and
``jacobian``), and :class:`ArrayResiduals` gives it the interface of
:class:`~symgrad.lsq.kernel.ResidualKernel`, so every method, robust loss, bound, weight and
statistic of :func:`symgrad.least_squares` applies unchanged.

``normal`` never stores J: the samples run in blocks (256-2048 samples, ``block * m * P``
numbers at most about a megabyte); each block's rows of J and r are computed by the model's
code, its ``JᵀJ``, ``Jᵀr`` and ``rᵀr`` by BLAS, and the block totals are added with Neumaier
compensation. The blocks depend on N, m and P only, never on threads.

>>> import numpy as np, symgrad as sg
>>> W = sg.params("W", shape=(2, 2)); X = sg.data("X", shape=(2,)); Y = sg.data("Y", shape=(2,))
>>> rk = compile_array_residuals(W @ X - Y)
>>> rk.m, rk.params
(2, ('W[0, 0]', 'W[0, 1]', 'W[1, 0]', 'W[1, 1]'))
>>> fit = sg.least_squares(rk, np.zeros(4), data={"X": np.eye(2), "Y": [[1.0, 2.0], [3.0, 4.0]]})
>>> np.round(fit.x, 12).tolist()
[1.0, 3.0, 2.0, 4.0]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence

import numpy as np

from ..argcheck import as_out, as_vector, data_inputs, no_positional
from ..derive import KinkPolicy
from ..distributed.detect import has_dask
from ..errors import ProblemError
from .blocksums import neumaier, normal_sums, split

__all__ = ["ArrayResiduals", "BoundArrayResiduals", "compile_array_residuals",
           "is_array_residual"]

#: Numbers of J (``block * m * P``) a block of the fused pass aims at (about 1 MB).
TARGET = 2**17
#: The bounds on a block's number of samples.
MIN_BLOCK, MAX_BLOCK = 256, 2048


def is_array_residual(resid) -> bool:
    """Whether ``resid`` is an array expression (or a list holding one)."""
    from ..arrays.graph import Node

    if isinstance(resid, (list, tuple)):
        return any(isinstance(r, Node) for r in resid)
    return isinstance(resid, Node)


def compile_array_residuals(resid, params: Sequence | None = None, data=None, *,
                            policy: KinkPolicy | None = None,
                            block: int | None = None) -> ArrayResiduals:
    """Compile an array residual (one vector, matrix... per sample) into an
    :class:`ArrayResiduals` kernel. ``params`` fixes the order of x (default: declaration
    order); ``block``: samples per block of the fused pass (default from m and P). ``data``
    is refused (it names the data symbols of text residuals)."""
    from ..arrays.graph import Node
    from ..arrays.model import compile_model

    if data is not None:
        raise TypeError("data= names the data columns of text residuals; an array residual "
                        "declares its data with sg.data('X', shape=...)")
    if isinstance(resid, (list, tuple)):
        raise ProblemError("array residuals are one array expression per problem, not a list: "
                           "stack the outputs in one array (e.g. W @ X + b - Y gives a vector "
                           "per sample)")
    if not isinstance(resid, Node) or not resid.per_sample:
        raise ProblemError(
            "an array residual must keep the sample axis (one residual vector per sample, from "
            "per-sample data such as sg.data('X', shape=(4,))), got "
            + ("a reduction or parameters only: least squares sums the squares itself, so "
               "pass the residuals, e.g. W @ X + b - Y, not sg.sum((W @ X + b - Y)**2)"
               if isinstance(resid, Node) else type(resid).__name__))
    try:
        model = compile_model(resid, params, policy=policy)
    except ProblemError as exc:
        raise ProblemError(f"array residual: {exc}") from None
    return ArrayResiduals(model, block=block)


class ArrayResiduals:
    """Per-sample residual vectors of an array model and their exact Jacobian, with the
    interface of :class:`~symgrad.lsq.kernel.ResidualKernel` (data arrays by name, one row per
    sample; every method also exists on :meth:`bind`'s result without the data keywords)."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, model, block: int | None = None) -> None:
        if model.dtype != np.float64:
            raise ValueError("least squares runs in float64: compile the model with float64")
        #: The compiled model whose outputs are the residuals.
        self.model = model
        self.expr = model.expr
        #: One name per entry of x (``W[0, 1]``, ``b[2]``, ``a``), in packing order.
        self.params: tuple[str, ...] = tuple(model.labels)
        self.n_params: int = model.n_params
        self.shapes = model.shapes
        #: The residual's shape per sample and the number of residuals per sample.
        self.shape: tuple[int, ...] = model.shape
        self.m: int = math.prod(self.shape)
        self.data_names: tuple[str, ...] = model.data_names
        if block is None:
            block = min(MAX_BLOCK, max(MIN_BLOCK, TARGET // max(1, self.m * self.n_params)))
        elif isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be a positive integer, got {block!r}")
        #: Samples per block of the fused pass.
        self.block: int = block

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        return (f"<symgrad.ArrayResiduals params=({ps}), m={self.m} (shape {self.shape}), "
                f"data=({', '.join(self.data_names)})>")

    def pack(self, **arrays) -> np.ndarray:
        """The flat ``x`` from one array per parameter (by name)."""
        return self.model.pack(**arrays)

    def unpack(self, x) -> dict[str, np.ndarray]:
        """Views of ``x`` per parameter, in their shapes."""
        return self.model.unpack(x)

    def bind(self, **data) -> BoundArrayResiduals:
        """Validate and convert the data arrays once; the result has the same methods
        without data keywords."""
        if has_dask(data):  # arrays on a Dask cluster: the block pass runs per chunk there
            from .array_dask import bind_dask

            return bind_dask(self, data)
        cols, n = self.model._columns(data)
        if n is None or n == 0:
            raise ValueError("the data arrays hold no samples: least squares needs at least one")
        if self.model._scan_always:
            self.model._name_non_finite(dict(zip(self.data_names, cols, strict=True)))
        return BoundArrayResiduals(self, cols, n)

    def n_residuals(self, *extra, **data) -> int:
        """``M = N*m``."""
        no_positional(extra, self.data_names, "n_residuals")
        return self.bind(**data).n_residuals()

    def residuals(self, x, /, out=None, *extra, **data) -> np.ndarray:
        """The residual vector ``(M,)``, sample-major."""
        no_positional(extra, self.data_names, "residuals")
        return self.bind(**data).residuals(x, out)

    def jacobian(self, x, /, out=None, *extra, **data) -> np.ndarray:
        """The Jacobian ``(M, P)`` (materialised; prefer :meth:`normal` for large M)."""
        no_positional(extra, self.data_names, "jacobian")
        return self.bind(**data).jacobian(x, out)

    def jvp(self, x, v, /, *extra, **data) -> np.ndarray:
        """``J v`` ``(M,)`` without forming J."""
        no_positional(extra, self.data_names, "jvp")
        return self.bind(**data).jvp(x, v)

    def vjp(self, x, u, /, *extra, **data) -> np.ndarray:
        """``J^T u`` ``(P,)``, block by block."""
        no_positional(extra, self.data_names, "vjp")
        return self.bind(**data).vjp(x, u)

    def normal(self, x, /, jscale=None, rscale=None, *extra,
               **data) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)`` (rows scaled by ``jscale`` and ``rscale``, as
        :meth:`ResidualKernel.normal <symgrad.lsq.kernel.ResidualKernel.normal>`) in one pass
        over blocks of samples that never stores J."""
        no_positional(extra, self.data_names, "normal")
        return self.bind(**data).normal(x, jscale, rscale)

    def rows(self, x, lo: int, hi: int, /, *extra, **data) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian rows ``((hi-lo)*m, P)`` and residuals of samples ``lo..hi-1``."""
        no_positional(extra, self.data_names, "rows")
        return self.bind(**data).rows(x, lo, hi)


class BoundArrayResiduals:
    """An :class:`ArrayResiduals` with its data validated once (``kernel.bind(...)``)."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, kernel: ArrayResiduals, cols: list[np.ndarray], n: int) -> None:
        self.kernel, self.cols = kernel, cols
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names: tuple[str, ...] = ()
        #: Number of samples.
        self.n_samples: int = n
        self._M = n * kernel.m
        self._model = kernel.model
        self._sampled = [name in self._model._sampled for name in kernel.data_names]
        self._inputs = data_inputs(dict(zip(kernel.data_names, cols, strict=True)),
                                   "data array")

    def __repr__(self) -> str:
        return f"<symgrad.BoundArrayResiduals M={self._M} of {self.kernel!r}>"

    def n_residuals(self) -> int:
        return self._M

    # -- helpers -----------------------------------------------------------------------------
    def _x(self, x, what: str = "x") -> np.ndarray:
        return as_vector(x, what, self.params, self.n_params)

    def _out(self, out, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
        """A new ``out``, or the caller's checked: shape, C order, and no memory shared with
        ``x`` or the data (the arrays are the caller's: bound without a copy)."""
        return as_out(out, shape, "out", inputs=[("x", x), *self._inputs], contiguous=True)

    def _args(self, lo: int, hi: int) -> tuple:
        """The compiled functions' data arguments for samples ``lo..hi-1``."""
        return (self._model.dims, *(c[lo:hi] if s else c
                                    for c, s in zip(self.cols, self._sampled, strict=True)))

    def _blocks(self, lo: int = 0, hi: int | None = None):
        hi = self.n_samples if hi is None else hi
        for a in range(lo, hi, self.kernel.block):
            yield a, min(hi, a + self.kernel.block)

    def _fill(self, name: str, x, extra: tuple, out: np.ndarray, lo: int, hi: int) -> None:
        """``out`` (rows ``lo..hi-1`` of the samples, per-sample shape and any trail) by the
        model's compiled ``name``, block by block."""
        for a, b in self._blocks(lo, hi):
            self._model._run(name, x, (*extra, out[a - lo:b - lo]), self._args(a, b))

    def _checked(self, *results):
        """``results`` when finite; else the error naming the first non-finite datum (NaN
        from finite data, ``log`` of a negative, is returned as it is)."""
        if not all(np.isfinite(r).all() for r in results):
            self._model._name_non_finite(dict(zip(self.kernel.data_names, self.cols,
                                                  strict=True)))
        return results[0] if len(results) == 1 else results

    def _rows(self, x: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """J rows and residuals of samples ``lo..hi-1`` (no checks)."""
        k, shape, P = hi - lo, self.kernel.shape, self.n_params
        J, r = np.empty((k, *shape, P)), np.empty((k, *shape))
        self._model._run("jacobian", x, (J,), self._args(lo, hi))
        self._model._run("predict", x, (r,), self._args(lo, hi))
        return J.reshape(k * self.m, P), r.reshape(k * self.m)

    # -- the interface ---------------------------------------------------------------------
    def residuals(self, x, out=None) -> np.ndarray:
        x = self._x(x)
        r = self._out(out, (self._M,), x)
        self._fill("predict", x, (), r.reshape(self.n_samples, *self.kernel.shape), 0,
                   self.n_samples)
        return self._checked(r)

    def jacobian(self, x, out=None) -> np.ndarray:
        x = self._x(x)
        J = self._out(out, (self._M, self.n_params), x)
        self._fill("jacobian", x, (), J.reshape(self.n_samples, *self.kernel.shape,
                                                self.n_params), 0, self.n_samples)
        return self._checked(J)

    def jvp(self, x, v) -> np.ndarray:
        x, v = self._x(x), self._x(v, "v")
        out = np.empty((self.n_samples, *self.kernel.shape))
        self._fill("jvp", x, (v,), out, 0, self.n_samples)
        return self._checked(out.reshape(self._M))

    def vjp(self, x, u) -> np.ndarray:
        x = self._x(x)
        u = as_vector(u, "u (one weight per residual)", "", self._M)
        acc, err = np.zeros(self.n_params), np.zeros(self.n_params)
        for a, b in self._blocks():
            J, _ = self._rows(x, a, b)
            neumaier(acc, err, J.T @ u[a * self.m:b * self.m])
        return self._checked(acc + err)

    def normal(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        x = self._x(x)
        js = None if jscale is None else as_vector(jscale, "jscale (one per residual)", "",
                                                   self._M)
        rs = None if rscale is None else as_vector(rscale, "rscale (one per residual)", "",
                                                   self._M)
        A, g, rtr = split(normal_sums(self._rows, x, self.n_samples, self.m, self.kernel.block,
                                      js, rs), self.n_params)
        self._checked(A, g, np.array(rtr))
        return A, g, rtr

    def rows(self, x, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            lo, hi = operator.index(lo), operator.index(hi)
        except TypeError:
            raise TypeError("rows(x, lo, hi): lo and hi must be integers") from None
        if not 0 <= lo <= hi <= self.n_samples:
            raise ValueError(f"rows(x, lo, hi): need 0 <= lo <= hi <= {self.n_samples} (the "
                             f"number of samples), got lo={lo}, hi={hi}")
        x = self._x(x)
        J, r = np.empty(((hi - lo) * self.m, self.n_params)), np.empty((hi - lo) * self.m)
        for a, b in self._blocks(lo, hi):
            J[(a - lo) * self.m:(b - lo) * self.m], r[(a - lo) * self.m:(b - lo) * self.m] = \
                self._rows(x, a, b)
        return self._checked(J, r)


def x0_by_name(kernel, x0) -> object:
    """``x0`` given as a dict of arrays by parameter name (``{"W": ..., "b": ...}``) packed into
    the flat vector of an array-residual kernel; anything else as it is."""
    if isinstance(kernel, ArrayResiduals) and isinstance(x0, Mapping) \
            and set(map(str, x0)) == set(kernel.shapes):
        return kernel.pack(**{str(k): v for k, v in x0.items()})
    return x0
