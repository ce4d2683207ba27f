"""Least squares on array models: per-sample residual vectors, ``W @ X + b - Y``.

An array expression that keeps the sample axis (shape ``(N, *shape)``) is a residual with
``m = prod(shape)`` entries per sample, flattened sample-major and in C order within a sample
(sample ``i`` owns rows ``i*m .. i*m+m-1``). It has two lowerings, both a
:class:`~symgrad.runtime.residual.ResidualKernel` (``bind`` gives the one ``BoundResiduals``;
the loss ``½‖r‖²`` comes with it), so every method, robust loss, bound, weight and statistic
of :func:`symgrad.least_squares` applies unchanged:

- **the fused sample loop** (the default, ``fuse=None``, when
  :func:`~symgrad.passes.fuse.fusable` allows it: small per-sample arrays, at most 64 entries
  of ``x``): the residual unrolled for one sample and compiled as residuals written per
  sample are
  (:class:`~symgrad.runtime.unrolled_residual.FusedArrayResiduals`): one pass over the samples
  sums ``JᵀJ``, ``Jᵀr`` and ``rᵀr`` from a few locals per sample;
- **the array lowering** (:class:`ArrayResiduals`, ``fuse=False`` or when the residual does not
  fuse): the model's generated ``predict``, ``jvp`` and ``jacobian``
  (:func:`symgrad.build.model.compile_model`) block by block.

``ArrayResiduals.normal`` never stores J: the samples run in blocks (256-2048 samples,
``block * m * P`` numbers at most about a megabyte); each block's rows of J and r are computed
by the model's code, its ``JᵀJ``, ``Jᵀr`` and ``rᵀr`` by BLAS, and the block totals are added
with Neumaier compensation. The blocks depend on N, m and P only, never on threads.

>>> import numpy as np, symgrad as sg
>>> W = sg.params("W", shape=(2, 2)); X = sg.data("X", shape=(2,)); Y = sg.data("Y", shape=(2,))
>>> rk = compile_array_residuals(W @ X - Y)
>>> rk.fused, rk.m, rk.params
(True, 2, ('W[0, 0]', 'W[0, 1]', 'W[1, 0]', 'W[1, 1]'))
>>> fit = sg.least_squares(rk, np.zeros(4), data={"X": np.eye(2), "Y": [[1.0, 2.0], [3.0, 4.0]]})
>>> np.round(fit.x, 12).tolist()
[1.0, 3.0, 2.0, 4.0]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..ad.derive import KinkPolicy
from ..build.model import compile_model
from ..build.residual_kernel import residual_kernel
from ..distributed.array_residuals import bind_dask
from ..distributed.detect import has_dask
from ..errors import ProblemError
from ..ir.array_problem import ArrayProblem
from ..ir.graph import Node
from ..ir.model_problem import ModelProblem, model_problem
from ..ir.residual_problem import ResidualProblem, residual_problem
from ..passes.fuse import fusable, unroll
from .argcheck import by_name
from .array import ArrayKernel
from .base import Kernel
from .blocksums import neumaier, normal_sums, split
from .residual import ResidualKernel
from .unrolled_residual import FusedArrayResiduals

__all__ = ["ArrayResiduals", "compile_array_residuals", "is_array_residual", "unrolled_problem"]

#: Numbers of J (``block * m * P``) a block of the fused pass aims at (about 1 MB).
TARGET = 2**17
#: The bounds on a block's number of samples.
MIN_BLOCK, MAX_BLOCK = 256, 2048


def is_array_residual(resid) -> bool:
    """Whether ``resid`` is an array expression (or a list holding one)."""
    if isinstance(resid, (list, tuple)):
        return any(isinstance(r, Node) for r in resid)
    return isinstance(resid, Node)


def compile_array_residuals(resid, params: Sequence | None = None, data=None, *,
                            policy: KinkPolicy | None = None, block: int | None = None,
                            fuse: bool | None = None, dtype: str = "float64",
                            parallel: bool | None = None) -> ResidualKernel:
    """Compile an array residual (one vector, matrix... per sample). ``params`` fixes the order
    of x (default: declaration order). ``fuse``: True compiles one fused sample loop
    (:class:`~symgrad.runtime.unrolled_residual.FusedArrayResiduals`; a ProblemError says why
    when the residual does not fuse), False the array lowering (:class:`ArrayResiduals`,
    ``block`` samples per block of its pass, default from m and P), None (default) the fused
    loop when :func:`~symgrad.passes.fuse.fusable` allows it. ``data`` is refused (it names the
    data symbols of text residuals). ``dtype="float32"``: each sample's residuals and Jacobian
    row in float32 (either lowering), every sum over samples and every result in float64.
    ``parallel`` picks the fused loop's serial or threaded functions
    (:attr:`~symgrad.runtime.residual.ResidualKernel.parallel`); the array lowering runs the
    model's code, whose products use the BLAS threads either way."""
    if data is not None:
        raise TypeError("data= names the data columns of text residuals; an array residual "
                        "declares its data with sg.data('X', shape=...)")
    if fuse is not None and not isinstance(fuse, bool):
        raise TypeError(f"fuse must be True, False or None (automatic), got {fuse!r}")
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

    def array() -> ArrayResiduals:
        try:
            model = compile_model(resid, params, policy=policy, dtype=dtype)
        except ProblemError as exc:
            raise ProblemError(f"array residual: {exc}") from None
        return ArrayResiduals(model, block=block)

    if fuse is False:
        return array()
    try:
        prob = model_problem(resid, params)
    except ProblemError as exc:
        raise ProblemError(f"array residual: {exc}") from None
    fused = fused_residuals(prob, policy or KinkPolicy(), array, dtype, parallel)
    if isinstance(fused, str):
        if fuse:
            raise ProblemError(f"fuse=True: this array residual does not fuse into one sample "
                               f"loop: {fused}; use fuse=False or None")
        return array()
    return fused


def unrolled_problem(prob: ModelProblem) -> ResidualProblem | str:
    """The residual problem of a model problem's output unrolled for one sample (one symbol
    per entry of ``x``, data components ``X[:, j]``), or why it does not fuse."""
    flat = ArrayProblem(prob.output, prob.params, prob.data, prob.dims)
    why = fusable(flat, prob.output)
    if why is not None:
        return why
    try:
        u = unroll(flat, root=prob.output)
    except ValueError as exc:
        return str(exc).removeprefix("not fused: ")
    exprs = list(u.expr) if isinstance(u.expr, tuple) else [u.expr]
    with warnings.catch_warnings():  # an entry of x no residual reads: its column of J is 0
        warnings.simplefilter("ignore", UserWarning)
        rp = residual_problem(exprs, params=list(u.params))
    unread = sorted({d.name for d in prob.data} - set(rp.data_names))
    if unread:
        return f"data array '{unread[0]}' is not read by the unrolled residuals"
    return rp


def fused_residuals(prob: ModelProblem, policy: KinkPolicy, array: Callable[[], ResidualKernel],
                    real: str = "float64", parallel: bool | None = None
                    ) -> FusedArrayResiduals | str:
    """The fused sample-loop kernel of a model problem's output (per-sample arithmetic in
    ``real``, ``parallel`` as the kernel's), or why it does not fuse."""
    rp = unrolled_problem(prob)
    if isinstance(rp, str):
        return rp
    tail = f", dtype={real!r}" if real != "float64" else ""
    return residual_kernel(rp, policy, real, f"symgrad.compile_residuals(resid, fuse=True{tail})",
                           FusedArrayResiduals, expr=prob.output,
                           shapes={p.name: tuple(int(s) for s in p.shape) for p in prob.params},
                           data_shapes={d.name: tuple(int(s) for s in d.shape[1:])
                                        for d in prob.data},
                           array=array, parallel=parallel)


class ArrayResiduals(ResidualKernel):
    """Per-sample residual vectors of an array model and their exact Jacobian: a
    :class:`~symgrad.runtime.residual.ResidualKernel` (and so the loss ``½‖r‖²``) whose residual
    family runs the model's ``predict``, ``jvp`` and ``jacobian`` block by block. Data are
    arrays by name, one row per sample (``batch=`` selects samples)."""

    _data_kind = "data array"
    #: The lowering: blocks of the model's code (``FusedArrayResiduals.fused`` is True).
    fused: bool = False
    # the model's arrays are validated and named as an array loss's (one definition)
    _columns = ArrayKernel._columns
    _name_non_finite = ArrayKernel._name_non_finite

    def __init__(self, model, block: int | None = None) -> None:
        #: The compiled model whose outputs are the residuals.
        self.model = model
        #: The model's arithmetic (float32: its rows are widened to float64 before the sums;
        #: x and every result stay float64).
        self.data_dtype = model.dtype
        self.expr, self.policy = model.expr, model.policy
        #: One name per entry of x (``W[0, 1]``, ``b[2]``, ``a``), in packing order.
        self.params: tuple[str, ...] = tuple(model.labels)
        self.n_params: int = model.n_params
        self.shapes = model.shapes
        #: The residual's shape per sample and the number of residuals per sample.
        self.shape: tuple[int, ...] = model.shape
        self.m: int = math.prod(self.shape)
        self.data_names: tuple[str, ...] = model.data_names
        self._scan_always = model._scan_always
        self._sampled = model._sampled  # read by the borrowed _name_non_finite
        self.sampled = model._sampled
        self._pick = [name in model._sampled for name in self.data_names]
        self._first = self._pick.index(True)
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

    def formulas(self) -> str:
        """The residuals as straight-line array formulas."""
        return self.model.formulas()

    def bind(self, **data):
        if has_dask(data):  # arrays on a Dask cluster: the block pass runs per chunk there
            return bind_dask(self, data)
        return Kernel.bind(self, **data)

    # -- data: the model's arrays --------------------------------------------------------------
    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """``(dims, *arrays)`` in :attr:`data_names` order (the rows of ``batch`` gathered)."""
        if has_dask(data or {}):
            raise TypeError("Dask arrays go to bind(...) or sg.least_squares, which run the "
                            "block pass where the chunks are")
        try:
            args = ArrayKernel.data_args(self.model, data, batch, scan=False)
        except ValueError as exc:
            if "empty" not in str(exc):
                raise
            raise ValueError("the data arrays hold no samples: least squares needs at least "
                             "one") from None
        if scan:
            self._name_non_finite(data, batch)
        return args

    def _samples(self, args: tuple) -> int:
        return args[1 + self._first].shape[0]

    # -- the residual family by the model's code, block by block -------------------------------
    def _blocks(self, args: tuple, lo: int = 0, hi: int | None = None):
        """``(a, b, args of samples a..b-1)`` per block of samples ``lo..hi-1``."""
        hi = self._samples(args) if hi is None else hi
        for a in range(lo, hi, self.block):
            b = min(hi, a + self.block)
            yield a, b, (args[0], *(c[a:b] if s else c
                                    for c, s in zip(args[1:], self._pick, strict=True)))

    def _raise_overflow(self, data: Mapping, batch=None) -> None:
        ArrayKernel._raise_overflow(self.model, data, batch)  # the model's dtype and columns

    def _call(self, name: str, x: np.ndarray, part: tuple, out: np.ndarray, *lead) -> None:
        """The model's compiled ``name`` into ``out``; a float32 model computes in float32
        (x and ``lead`` rounded), its rows widened into the float64 ``out``."""
        if self.data_dtype == np.float64:
            self.model._run(name, x, part, *lead, out)
            return
        got = np.empty(out.shape, self.data_dtype)
        self.model._run(name, x.astype(self.data_dtype), part,
                        *(v.astype(self.data_dtype) for v in lead), got)
        out[...] = got

    def _fill(self, name: str, x: np.ndarray, args: tuple, out: np.ndarray, *lead) -> None:
        """``out`` (one row per sample) by the model's compiled ``name``, block by block."""
        for a, b, part in self._blocks(args):
            self._call(name, x, part, out[a:b], *lead)

    def _fill_residuals(self, x, r, args: tuple) -> None:
        self._fill("predict", x, args, r.reshape(-1, *self.shape))

    def _fill_jvp(self, x, v, out, args: tuple) -> None:
        self._fill("jvp", x, args, out.reshape(-1, *self.shape), v)

    def _fill_rows(self, x, lo: int, hi: int, J, r, args: tuple) -> None:
        J3 = J.reshape(hi - lo, *self.shape, self.n_params)
        for a, b, part in self._blocks(args, lo, hi):
            self._call("jacobian", x, part, J3[a - lo:b - lo])
            if r is not None:
                self._call("predict", x, part, r.reshape(hi - lo, *self.shape)[a - lo:b - lo])

    def _block(self, x, args: tuple, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """J rows and residuals of samples ``lo..hi-1`` (new arrays)."""
        k = (hi - lo) * self.m
        J, r = np.empty((k, self.n_params)), np.empty(k)
        self._fill_rows(x, lo, hi, J, r, args)
        return J, r

    def _fill_vjp(self, x, u, out, args: tuple) -> None:
        acc, err, m = np.zeros(self.n_params), np.zeros(self.n_params), self.m
        for a, b, _ in self._blocks(args):
            J = np.empty(((b - a) * m, self.n_params))
            self._fill_rows(x, a, b, J, None, args)
            neumaier(acc, err, J.T @ u[a * m:b * m])
        np.add(acc, err, out=out)

    def _sums(self, x, js, rs, args: tuple) -> tuple[np.ndarray, np.ndarray, float]:
        def rows(x, lo, hi):
            return self._block(x, args, lo, hi)

        return split(normal_sums(rows, x, self._samples(args), self.m, self.block, js, rs),
                     self.n_params)


def x0_by_name(kernel, x0) -> object:
    """``x0`` given as a dict of arrays by parameter name (``{"W": ..., "b": ...}``) packed into
    the flat vector of an array-residual kernel; anything else as it is."""
    if not (isinstance(kernel, ArrayResiduals | FusedArrayResiduals) and isinstance(x0, Mapping)):
        return x0
    if set(map(str, x0)) <= set(kernel.params):  # entries by label ('W[0, 1]'): checked later
        return x0
    return by_name(kernel, x0)
