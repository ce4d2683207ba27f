"""The compiled model: per-sample outputs ``model(x, **data)`` and their Jacobian in ``x``.

``x`` packs the parameters as for a loss kernel (``params``, ``shapes``, ``pack``, ``unpack``,
``labels``, ``init`` are the same); data arrays are passed by name with one row per sample.
``batch_size=`` evaluates the samples in chunks (the outputs are written chunk by chunk into
one result; Dask arrays are read one chunk at a time).

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t = sg.data("t")
>>> model = sg.compile(a * t + b)
>>> model(np.array([2.0, 1.0]), t=np.array([0.0, 1.0, 2.0]))
array([1., 3., 5.])
>>> model.jacobian(np.array([2.0, 1.0]), t=np.array([0.0, 1.0, 2.0]))
array([[0., 1.],
       [1., 1.],
       [2., 1.]])
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..ad.derive import KinkPolicy
from ..backend.numba.array_module import _idents
from ..distributed.detect import has_dask
from ..errors import ProblemError
from ..ir.formula import program
from ..ir.model_problem import ModelProblem
from .array import ArrayKernel, index_columns, read_columns, setup
from .datacheck import check_names, non_finite_error, overflow_error
from .model_dask import dask_chunks

#: Numbers of J per block of samples of :meth:`ModelKernel.jacobian` (512 KB): a tanh layer's
#: J (P = 136, 8 outputs, 20,000 samples) took 0.32 s in one call, 0.11-0.13 s in such blocks.
J_BLOCK = 2**16

__all__ = ["ModelKernel"]


class ModelKernel:
    """A compiled model: ``model(x, **data)`` gives the outputs, shape ``(N, *shape)``."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "model"

    # x's layout is a loss kernel's: the same packing helpers (one definition)
    unpack = ArrayKernel.unpack
    pack = ArrayKernel.pack
    init = ArrayKernel.init
    labels = ArrayKernel.labels
    _layout = ArrayKernel._layout
    _x = ArrayKernel._x
    _run = ArrayKernel._run

    def __init__(self, problem: ModelProblem, source: str, path: Path,
                 module: types.ModuleType, policy: KinkPolicy | None = None,
                 dtype: str = "float64") -> None:
        setup(self, problem, problem.output, source, path, module, policy, dtype)
        #: The output's shape per sample: ``model(...)`` has shape ``(N, *shape)``.
        self.shape: tuple[int, ...] = problem.shape
        self._cols = dict(zip(self.data_names, _idents(self.data_names, "c_"), strict=True))
        #: The compiled functions: ``predict(x, out, dims, *data)``, ``jvp(x, v, out, ...)``.
        self.jit = types.SimpleNamespace(predict=module.predict, jvp=module.jvp,
                                         jacobian=module.jacobian, vjp=module.vjp)
        for col in self._cols.values():  # along a data array: jvp_<name>, jac_<name>
            for f in (f"jvp{col[1:]}", f"jac{col[1:]}"):
                if hasattr(module, f):
                    setattr(self.jit, f, getattr(module, f))

    def _not_a_loss(self, *args, **kwargs):
        raise ProblemError("this expression keeps the sample axis, so sg.compile made it a model "
                           "(one output per sample), not a loss: to fit it, reduce the samples, "
                           "e.g. sg.compile(sg.mean((model_expr - y)**2)); to predict, call "
                           "model(x, **data)")

    # what trains or checks a loss (sg.minimize, sg.check_grad) says what to do with a model
    value = value_and_grad = grad = hvp = hessian = data_args = _not_a_loss

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        return (f"<ModelKernel output=(N{''.join(f', {s}' for s in self.shape)}) params=({ps}) "
                f"data=({', '.join(self.data_names)})>")

    def formulas(self) -> str:
        """The model as straight-line array formulas."""
        return program({"output": self.problem.output})

    # -- data --------------------------------------------------------------------------------
    def _columns(self, data: Mapping) -> tuple[list[np.ndarray], int]:
        """The validated arrays in DATA order and the number of samples (no value scan)."""
        check_names(data, self.data_names, "data array")
        cols, n = read_columns(self, data)
        return index_columns(self, cols), n

    def _chunks(self, n: int, batch_size: int | None) -> list[slice]:
        if batch_size is None:
            return [slice(0, n)]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return [slice(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)] or \
            [slice(0, 0)]

    def _each(self, data: Mapping, batch_size: int | None, trail: tuple, fill):
        """``fill(args, out_rows)`` per chunk of samples into one ``(N, *shape, *trail)``."""
        if has_dask(data):
            return dask_chunks(self, data, batch_size, trail, fill)
        cols, n = self._columns(data)
        if self._scan_always:
            self._name_non_finite(data)
        out = np.empty((n, *self.shape, *trail), dtype=self.dtype)
        sampled = [name in self._sampled for name in self.data_names]
        for rows in self._chunks(n, batch_size):
            args = (self.dims, *(c[rows] if s else c for c, s in zip(cols, sampled,
                                                                       strict=True)))
            fill(args, out[rows])
        if not self._scan_always and not np.isfinite(out).all():
            self._name_non_finite(data)
        return out

    def _name_non_finite(self, data: Mapping, start: int = 0) -> None:
        """Raise the error naming the first non-finite data value, if any, or (a float32 model)
        the first finite one its cast read as inf (a model may also give NaN or inf at finite
        data, ``log(t)`` at ``t = -1``: those are returned as they are). ``data``: the arrays
        as passed (before the cast, so that 1e39 is named as itself); ``start`` is the first row
        of a chunk."""
        data = {c: np.asarray(data[c]) for c in self.data_names}
        order = [c for s in (True, False) for c in self.data_names if (c in self._sampled) == s]
        for c in order:
            err = non_finite_error(c, data[c], kind="data array",
                                   start=start if c in self._sampled else 0)
            if err is not None:
                raise err
        if self.dtype != np.float64:
            for c in order:
                err = None if c in self._rows else overflow_error(
                    c, data[c], self.dtype, start=start if c in self._sampled else 0)
                if err is not None:
                    raise err

    # -- evaluation ---------------------------------------------------------------------------
    def __call__(self, x, /, *, batch_size: int | None = None, **data) -> np.ndarray:
        """The outputs at ``x``: one row per sample, shape ``(N, *shape)``."""
        x = self._x(x)

        def fill(args, out):
            self._run("predict", x, args, out)

        return self._each(data, batch_size, (), fill)

    predict = __call__

    def jvp(self, x, v, /, *, batch_size: int | None = None, **data) -> np.ndarray:
        """The outputs' derivative along the parameter direction ``v`` (``J @ v``, without J)."""
        x, v = self._x(x), self._x(v, "v")

        def fill(args, out):
            self._run("jvp", x, args, v, out)

        return self._each(data, batch_size, (), fill)

    def vjp(self, x, w, /, *, batch_size: int | None = None, **data) -> np.ndarray:
        """The gradient in ``x`` of ``sum(outputs * w)`` over the samples (``J.T @ w`` without
        J): ``w`` has the outputs' shape ``(N, *shape)``, e.g. the derivative of a loss computed
        outside symgrad by each output. In-memory data; ``batch_size`` sums chunk by chunk.

        >>> import numpy as np, symgrad as sg
        >>> a, b = sg.params("a b"); t = sg.data("t")
        >>> sg.compile(a * t + b).vjp([2.0, 1.0], [1.0, 1.0, 1.0], t=np.array([0.0, 1.0, 2.0]))
        array([3., 3.])
        """
        x = self._x(x)
        if has_dask(data):
            raise TypeError("model.vjp takes in-memory data arrays; for data on a cluster, "
                            "compile the loss itself (sg.compile(sg.mean(...))) and bind it")
        cols, n = self._columns(data)
        w = np.asarray(w)
        if w.shape != (n, *self.shape) or w.dtype.kind not in "fiu":
            raise ValueError(f"w must be numbers of the outputs' shape {(n, *self.shape)} (one "
                             f"row per sample), got {w.dtype} of shape {w.shape}")
        bad = np.flatnonzero(~np.isfinite(w.reshape(n, math.prod(self.shape))).all(axis=1))
        if bad.size:
            raise ValueError(f"w has a non-finite value in row {bad[0]}")
        if self._scan_always:
            self._name_non_finite(data)
        w = w.astype(self.dtype, copy=False)
        g, part = np.zeros(x.shape[0]), np.empty(x.shape[0], dtype=self.dtype)
        sampled = [name in self._sampled for name in self.data_names]
        for rows in self._chunks(n, batch_size):
            args = (self.dims, *(c[rows] if s else c for c, s in zip(cols, sampled,
                                                                       strict=True)))
            self._run("vjp", x, args, np.ascontiguousarray(w[rows]), part)
            g += part
        if not self._scan_always and not np.isfinite(g).all():
            self._name_non_finite(data)
        return g

    def jacobian(self, x, /, *, wrt: str | None = None, batch_size: int | None = None,
                 **data) -> np.ndarray:
        """The outputs' Jacobian in ``x``, shape ``(N, *shape, P)``, by forward tangents, so
        meant for small P (a fitted curve's 3 parameters, not a network's weights): with scalar
        parameters only, all P columns in one pass; otherwise the forward work once, then each
        column's part that is linear in the direction. In-memory samples run in blocks of
        about :data:`J_BLOCK` numbers of J (so that the columns, written one at a time, stay in
        cache) unless ``batch_size`` is given.

        ``wrt="X"`` differentiates by a per-sample data array instead (saliency, sensitivities):
        each sample's outputs by its own row, shape ``(N, *shape, *X's shape per sample)``: one
        reverse sweep per output entry when a sample has fewer outputs than its row has
        entries (a classifier's 10 outputs of 784 pixels), else one forward sweep per entry."""
        x = self._x(x)
        if wrt is None:
            def fill(args, out):
                self._run("jacobian", x, args, out)

            if batch_size is None and not has_dask(data):
                batch_size = max(64, J_BLOCK // max(1, math.prod(self.shape) * self.n_params))
            return self._each(data, batch_size, (self.n_params,), fill)
        name = self._by_data(wrt)
        inner = self.data_shapes[wrt]
        width, outs = math.prod(inner), math.prod(self.shape)

        def fill_rows(args, out):  # the forward work once, a reverse sweep per output entry
            self._run("jac" + name[3:], x, args, out)

        def fill_data(args, out):
            n = out.shape[0]
            flat = out.reshape(*out.shape[:1 + len(self.shape)], width)
            v = np.zeros((n, width), dtype=self.dtype)
            col = np.empty(out.shape[:1 + len(self.shape)], dtype=self.dtype)
            for k in range(width):
                v[:, k] = 1.0
                self._run(name, x, args, v.reshape(n, *inner), col)
                flat[..., k] = col
                v[:, k] = 0.0

        rows = outs < width and hasattr(self.jit, "jac" + name[3:])
        return self._each(data, batch_size, inner, fill_rows if rows else fill_data)

    def _by_data(self, wrt: str) -> str:
        """The name of the compiled tangent along data array ``wrt``."""
        if wrt not in self.data_names:
            raise ValueError(f"wrt={wrt!r} names no data array of this model (data arrays: "
                             f"{', '.join(self.data_names)}); wrt=None differentiates by x")
        name = f"jvp{self._cols[wrt][1:]}"
        if not hasattr(self.jit, name):
            raise ValueError(f"wrt={wrt!r}: only per-sample float data arrays can be "
                             "differentiated (not index columns or whole arrays)")
        return name
