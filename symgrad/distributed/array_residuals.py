"""Array residuals on Dask arrays: the fused pass chunk by chunk where the chunks are.

``sg.least_squares(W @ X + b - Y, x0, data={"X": dask_X, "Y": dask_Y})`` binds to
:class:`DaskArrayResiduals`. Each chunk of samples (the per-sample arrays' own chunks along
axis 0) runs :func:`~symgrad.runtime.array_residual.normal_sums` on the worker that holds it, with
the model's generated module shipped as a :class:`~symgrad.distributed.worker.ModuleSpec`
(text and digest, verified there); each chunk returns ``P² + P + 1`` numbers, which the client
adds in chunk order with Neumaier compensation. Robust losses and weights send each chunk its
slice of the row scales. ``residuals``/``jacobian`` gather on the client (only when asked);
``method="precise"`` (rows streamed to this process) is refused.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> Xd = da.from_array(np.c_[np.arange(9.0), np.ones(9)], chunks=(4, 2))
>>> fit = sg.least_squares(X @ w - y, [0.0, 0.0], data={"X": Xd, "y": 2 * Xd[:, 0] + 1})
>>> np.round(fit.x, 12).tolist()
[2.0, 1.0]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from ..runtime.blocksums import neumaier, normal_sums, qr_merge, qr_sums, split
from ..runtime.datacheck import check_index_dtype, check_names, non_finite_error, overflow_error
from .arrays import check_index_rows
from .columns import _client
from .worker import ModuleSpec, load

__all__ = ["DaskArrayResiduals", "bind_dask"]


def _chunk(spec: ModuleSpec, layout: tuple, what: str, x: np.ndarray, first: int, js, rs,
           *cols) -> np.ndarray:
    """On a worker: one chunk's ``[JᵀJ, Jᵀr, rᵀr]`` (``what="normal"``), QR factor of
    ``[J | r]`` (``"qr"``), residuals or J rows.
    ``layout``: (dims, per-sample shape, which columns are per sample, block, names). A
    float32 model (its ``DTYPE``) reads x and the float columns as float32; its rows are
    widened to float64 before the sums."""
    dims, shape, sampled, block, names, gathers = layout
    mod = load(spec)
    dt = np.dtype(getattr(mod, "DTYPE", "float64"))
    given = [np.ascontiguousarray(c) for c in cols]
    check_index_rows(gathers, names, given, first)  # a bad row number named with its row
    with np.errstate(over="ignore"):  # beyond float32: named below if a result needs it
        cols = [c.astype(dt) if c.dtype.kind == "f" and c.dtype != dt else c for c in given]
    n, m, P = cols[sampled.index(True)].shape[0], int(np.prod(shape, dtype=int)), x.shape[0]

    def rows(x, lo, hi):
        args = (dims, *(c[lo:hi] if s else c for c, s in zip(cols, sampled, strict=True)))
        J, r = np.empty((hi - lo, *shape, P), dt), np.empty((hi - lo, *shape), dt)
        mod.jacobian(x.astype(dt, copy=False), J, *args)
        mod.predict(x.astype(dt, copy=False), r, *args)
        return (J.reshape((hi - lo) * m, P).astype(np.float64, copy=False),
                r.reshape((hi - lo) * m).astype(np.float64, copy=False))

    if what == "normal":
        out = normal_sums(rows, x, n, m, block, js, rs)
    elif what == "qr":  # this chunk's factor of [J | r] (method="precise")
        out = qr_sums(lambda lo, hi: rows(x, lo, hi), n, P, m, block, js, rs)
    else:
        J, r = rows(x, 0, n)
        out = r if what == "residuals" else J
    if not np.isfinite(out).all():  # bad data are named with their row in the whole array
        for name, c, s in zip(names, given, sampled, strict=True):
            err = non_finite_error(name, c, kind="data array", start=first if s else 0)
            if err is not None:
                raise err
        for name, c, s in zip(names, given, sampled, strict=True):
            err = overflow_error(name, c, dt, kind="data array", start=first if s else 0)
            if err is not None:
                raise err
    return out


class DaskArrayResiduals:
    """An :class:`~symgrad.runtime.array_residual.ArrayResiduals` bound to Dask arrays."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, kernel, data: dict, bounds: np.ndarray) -> None:
        self.kernel, self.data, self.bounds = kernel, data, bounds
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names: tuple[str, ...] = ()
        #: Number of samples.
        self.n_samples: int = int(bounds[-1])
        model = kernel.model
        self._spec = ModuleSpec.of(model)
        self._sampled = tuple(name in model._sampled for name in kernel.data_names)
        self._layout = (model.dims, kernel.shape, self._sampled, kernel.block,
                        kernel.data_names, {nm: tuple(g) for nm, g in model._rows.items()})

    def __repr__(self) -> str:
        return (f"<symgrad.DaskArrayResiduals M={self.n_residuals()} in {len(self.bounds) - 1} "
                f"chunks of {self.kernel!r}>")

    def n_residuals(self) -> int:
        return self.n_samples * self.m

    def persist(self) -> DaskArrayResiduals:
        """Keep the arrays in the cluster's memory (computed once); returns self. Needs a
        distributed client (without one it does nothing: Dask's local scheduler would load
        every chunk into this process), as for scalar residuals."""
        import dask

        if _client() is None:
            return self
        keys = list(self.data)
        self.data = dict(zip(keys, dask.persist(*self.data.values()), strict=True))
        return self

    def _map(self, what: str, x: np.ndarray, js=None, rs=None) -> list[np.ndarray]:
        """One ``_chunk`` task per chunk, computed where the chunks are."""
        import dask
        from dask import delayed

        spec, layout = delayed(self._spec, pure=True), delayed(self._layout, pure=True)
        m, tasks = self.m, []
        for lo, hi in itertools.pairwise(int(b) for b in self.bounds):
            cols = [a[lo:hi] if s else a for a, s in zip(self.data.values(), self._sampled,
                                                          strict=True)]
            scale = [None if v is None else v[lo * m:hi * m] for v in (js, rs)]
            tasks.append(delayed(_chunk, pure=True)(spec, layout, what, x, lo, *scale, *cols))
        return list(dask.compute(*tasks))

    def normal(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(JᵀJ, Jᵀr, rᵀr)``: each chunk's block pass on its worker, summed compensated."""
        x = self.kernel._x(x)
        js, rs = (None if v is None else np.ascontiguousarray(v, dtype=np.float64)
                  for v in (jscale, rscale))
        P = self.n_params
        acc, err = np.zeros(P * P + P + 1), np.zeros(P * P + P + 1)
        for row in self._map("normal", x, js, rs):
            neumaier(acc, err, row)
        return split(acc + err, P)

    def _gather(self, what: str, x, out) -> np.ndarray:
        x = self.kernel._x(x)
        M, P = self.n_residuals(), self.n_params
        out = self.kernel._out(out, (M,) if what == "residuals" else (M, P), "out",
                               [("x", x)])
        out[...] = np.concatenate(self._map(what, x))
        return out

    def residuals(self, x, out=None) -> np.ndarray:
        """The residual vector ``(M,)``, gathered on the client."""
        return self._gather("residuals", x, out)

    def jacobian(self, x, out=None) -> np.ndarray:
        """The Jacobian ``(M, P)``, gathered on the client (only when asked)."""
        return self._gather("jacobian", x, out)

    def qr(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(R, Qᵀr, rᵀr)`` for ``method="precise"``: each chunk's QR factor of ``[J | r]``
        (rows scaled as for :meth:`normal`) on its worker, merged on the client."""
        x = self.kernel._x(x)
        js, rs = (None if v is None else np.ascontiguousarray(v, dtype=np.float64)
                  for v in (jscale, rscale))
        return qr_merge(self._map("qr", x, js, rs), self.n_params)

    def rows(self, x, lo: int, hi: int):
        raise NotImplementedError("rows(x, lo, hi) would bring J's rows to this process: with "
                                  "Dask arrays, qr(x) factors them on the workers")


def bind_dask(kernel, data: Mapping) -> DaskArrayResiduals:
    """What ``kernel.bind(**data)`` returns when a data array is a Dask array: the per-sample
    arrays are checked (shape per sample, one row per sample) and aligned on the first one's
    chunks; arrays without a sample axis are read once."""
    import dask.array as da
    from dask import is_dask_collection

    check_names(data, kernel.data_names, "data array")
    model, out, first = kernel.model, {}, None
    for name in kernel.data_names:
        a = data[name]
        if is_dask_collection(a) and not hasattr(a, "chunks"):
            raise TypeError(f"data array '{name}' is a Dask {type(a).__name__}: pass Dask "
                            "arrays (e.g. df[cols].to_dask_array(lengths=True))")
        want = model.data_shapes[name]
        if name not in model._sampled:
            out[name] = np.ascontiguousarray(np.asarray(a), dtype=np.float64)
            if out[name].shape != tuple(want):
                raise ValueError(f"data array '{name}' must have shape {tuple(want)}, got "
                                 f"shape {out[name].shape}")
            continue
        a = da.asarray(a)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"data array '{name}' must be numeric, got dtype {a.dtype}")
        if name in model._rows:  # as in memory: no float or bool truncated into row numbers
            check_index_dtype(name, a.dtype)
        a = a.astype(np.int64 if name in model._rows else np.float64)
        if np.isnan(a.shape[0]):
            a.compute_chunk_sizes()
        if a.shape[1:] != tuple(want):
            raise ValueError(f"data array '{name}' must have shape (samples"
                             f"{''.join(f', {k}' for k in want)}), got shape {a.shape}")
        if first is None:
            first = name, a
        elif a.shape[0] != first[1].shape[0]:
            raise ValueError(f"data array '{name}' has {a.shape[0]} samples but '{first[0]}' "
                             f"has {first[1].shape[0]}: every array needs one row per sample")
        else:
            a = a.rechunk({0: first[1].chunks[0]})
        out[name] = a
    if first is None or first[1].shape[0] == 0:
        raise ValueError("the data arrays hold no samples: least squares needs at least one")
    bounds = np.cumsum((0, *first[1].chunks[0]))
    return DaskArrayResiduals(kernel, out, bounds)
