"""A model on Dask arrays: the samples are read one chunk at a time (data larger than memory),
the outputs gathered into one NumPy array of shape ``(N, *shape)``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

__all__ = ["dask_chunks"]


def dask_chunks(model, data: Mapping, batch_size: int | None, trail: tuple, fill) -> np.ndarray:
    """``fill(args, out_rows)`` for each chunk of the per-sample Dask arrays (their own chunks
    along the samples, or ``batch_size`` rows); arrays without a sample axis are read once."""
    from dask import is_dask_collection

    for name, a in data.items():
        if is_dask_collection(a) and not hasattr(a, "chunks"):
            raise TypeError(f"data array '{name}' is a Dask {type(a).__name__}: a model takes "
                            "Dask arrays (e.g. df[col].to_dask_array(lengths=True))")
    whole = {k: np.asarray(v) for k, v in data.items() if k not in model._sampled}
    sampled = {k: v for k, v in data.items() if k in model._sampled}
    for a in sampled.values():
        if is_dask_collection(a) and np.isnan(a.shape[0]):
            a.compute_chunk_sizes()
    first = next((v for v in sampled.values() if is_dask_collection(v)), None)
    n = first.shape[0]
    for name, a in sampled.items():
        if a.shape[0] != n:
            raise ValueError(f"data array '{name}' has {a.shape[0]} samples but the others have "
                             f"{n}: every array needs one row per sample")
    if batch_size is None:
        bounds = np.cumsum((0, *first.chunks[0]))
        rows = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    else:
        rows = model._chunks(n, batch_size)
    out = np.empty((n, *model.shape, *trail), dtype=model.dtype)
    for r in rows:
        part = {k: np.asarray(v[r]) for k, v in sampled.items()} | whole
        cols, m = model._columns(part)
        if m != r.stop - r.start:
            raise ValueError(f"rows {r.start}..{r.stop - 1}: the data arrays have different "
                             "numbers of samples")
        if model._scan_always:
            model._name_non_finite(part, start=r.start)
        fill((model.dims, *cols), out[r])
        if not model._scan_always and not np.isfinite(out[r]).all():
            model._name_non_finite(part, start=r.start)
    return out
