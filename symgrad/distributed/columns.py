"""Dask columns -> aligned chunks: one tuple of Dask blocks per chunk of samples.

Columns may be Dask arrays (1-D, 2-D ``(N, width)`` for vector columns, or ``(N, *shape)`` for
the data arrays of an array loss), Dask DataFrame columns (Series), or NumPy arrays mixed with
them (sent to the cluster in the Dask columns' chunks). Arrays whose chunks differ are rechunked
to the first Dask column's chunks; a sample's values stay in one chunk. Nothing is computed here
and no column reaches the client.

>>> import dask.array as da, numpy as np
>>> t = da.arange(10.0, chunks=4); y = da.ones(10, chunks=5)
>>> cs = aligned({"t": t, "y": y}, ("t", "y"), {"t": None, "y": None})
>>> cs.n_chunks, cs.offsets
(3, (0, 4, 8))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .resident import Resident
from .worker import check_lengths

__all__ = ["Chunks", "aligned"]


@dataclass(frozen=True)
class Chunks:
    """Aligned Dask arrays of the columns (in ``names`` order) and their chunks' delayed blocks.

    ``offsets[i]`` is the first sample of chunk ``i`` and ``n_samples`` the columns' length
    (None when the sizes are unknown, as for DataFrame partitions or after a boolean mask,
    until :meth:`sized`).
    """

    names: tuple[str, ...]
    arrays: tuple
    blocks: tuple[tuple, ...]  # one tuple of Delayed per chunk
    offsets: tuple[int | None, ...]
    n_samples: int | None = None
    #: chunk numbers by the worker holding them (persisted columns on a cluster), or None
    groups: tuple[tuple[int, ...], ...] | None = None
    #: one actor per worker holding its chunks (with ``groups``): calls skip the scheduler
    resident: Resident | None = None
    #: a subset's chunk numbers in ``whole`` (the chunks it was taken from), or None
    numbers: tuple[int, ...] | None = None
    whole: Chunks | None = None

    @property
    def n_chunks(self) -> int:
        return len(self.blocks)

    def number(self, i: int) -> int:
        """The number of chunk ``i`` in the whole set (a subset's chunks keep theirs)."""
        return i if self.numbers is None else self.numbers[i]

    def subset(self, which) -> Chunks:
        """The chunks numbered ``which`` (for mini-batches of whole chunks); persisted ones stay
        served by the same holders."""
        which = [int(i) for i in which]
        return Chunks(self.names, self.arrays, tuple(self.blocks[i] for i in which),
                      tuple(self.offsets[i] for i in which), resident=self.resident,
                      numbers=tuple(self.number(i) for i in which), whole=self.whole or self)

    def sized(self) -> Chunks:
        """These (whole) chunks with known sizes: when unknown, every column's length in every
        chunk is computed (a pass over the columns; over the kept blocks once persisted) and
        must agree chunk by chunk (:func:`~.worker.check_lengths`)."""
        import dask
        from dask import delayed

        if self.n_samples is not None:
            return self
        lengths = dask.compute(*[[delayed(len)(b) for b in blocks] for blocks in self.blocks])
        for i, per_col in enumerate(lengths):
            check_lengths(self.names, per_col, self.number(i))
        sizes = [int(per_col[0]) for per_col in lengths]
        if sum(sizes) == 0:
            raise ValueError("the data columns are empty: a reduction needs at least one sample")
        offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        return dataclasses.replace(self, offsets=offsets, n_samples=sum(sizes))

    def persisted(self) -> Chunks:
        """The columns computed into the cluster's memory, with the chunks grouped by the
        worker that holds them, and held there by one actor per worker (:mod:`.resident`: a
        call is one direct request per worker instead of a task per chunk through the
        scheduler, whose cost per task is milliseconds). Without a distributed client it does
        nothing: Dask's local scheduler would load every column into this process."""
        import dask

        if _client() is None:
            return self
        arrays = dask.persist(*self.arrays)
        out = aligned(dict(zip(self.names, arrays, strict=True)), self.names,
                      {nm: None if a.ndim == 1 else a.shape[1:]
                       for nm, a in zip(self.names, arrays, strict=True)}).sized()
        return dataclasses.replace(out, **_by_worker(out))

    def recovered(self) -> Chunks:
        """These chunks, regrouped with new holders when a holder's worker was lost (its chunks
        are then recomputed by Dask; a subset runs as tasks until its parent regroups); else
        themselves."""
        if self.resident is None or not self.resident.lost:
            return self
        return self.persisted() if self.whole is None else dataclasses.replace(
            self, resident=None)


def _to_array(name: str, col):
    """A Dask array for a column (Series -> its values; NumPy stays NumPy for now)."""
    import dask.array as da
    from dask import is_dask_collection

    if not is_dask_collection(col):
        return np.asarray(col)
    if isinstance(col, da.Array):
        return col
    if hasattr(col, "to_dask_array"):
        if getattr(col, "ndim", 1) != 1:
            raise TypeError(f"data column '{name}' is a Dask DataFrame: pass its columns by "
                            f"name ({name}=df['{name}'])")
        return col.to_dask_array()
    raise TypeError(f"data column '{name}' is a {type(col).__name__}: pass a Dask array or a "
                    "Dask DataFrame column")


def _check(name: str, a, width) -> None:
    """The in-memory kernel's column rules on dtype and shape (values are checked per chunk):
    ``width`` None for ``(N,)``, an int for ``(N, width)``, a tuple for ``(N, *width)``."""
    if a.dtype.kind not in "iub" and np.dtype(a.dtype).newbyteorder("=") not in (np.float32,
                                                                               np.float64):
        raise TypeError(f"data column '{name}' has dtype {a.dtype}: pass float64 or float32")
    trail = () if width is None else (width,) if isinstance(width, int) else tuple(width)
    if a.ndim != 1 + len(trail) or tuple(a.shape[1:]) != trail:
        shape = f"(N{''.join(f', {k}' for k in trail)})"
        raise ValueError(f"data column '{name}' must have shape {shape}, got {a.shape}")


def aligned(data: Mapping, names: tuple[str, ...], widths: Mapping) -> Chunks:
    """Validate the columns ``names`` of ``data`` and split them into common chunks."""
    import dask.array as da

    arrays = {nm: _to_array(nm, data[nm]) for nm in names}
    for nm, a in arrays.items():
        _check(nm, a, widths[nm])
    lead = next(nm for nm in names if isinstance(arrays[nm], da.Array))
    rows = arrays[lead].chunks[0]
    n = arrays[lead].shape[0]
    known = not any(math.isnan(c) for c in rows)
    for nm in names:
        a = arrays[nm]
        if not known and not (isinstance(a, da.Array) and len(a.chunks[0]) == len(rows)):
            raise ValueError(f"data column '{nm}' cannot be aligned with '{lead}', whose chunk "
                             "sizes are unknown (a Dask DataFrame column): take the columns "
                             "from one DataFrame, or pass df[c].to_dask_array(lengths=True)")
        if known and isinstance(a, da.Array) and any(math.isnan(c) for c in a.chunks[0]):
            raise ValueError(f"data column '{nm}' has unknown chunk sizes (a Dask DataFrame "
                             "column, or an array indexed by a mask) and cannot be aligned "
                             f"with '{lead}', whose sizes are known: take the columns from one "
                             "DataFrame or mask them alike, or give it its sizes "
                             f"(df['{nm}'].to_dask_array(lengths=True), "
                             f"{nm}.compute_chunk_sizes())")
        if known and not math.isnan(a.shape[0]) and a.shape[0] != n:
            raise ValueError(f"data column '{nm}' has {a.shape[0]} samples but '{lead}' has "
                             f"{n}: columns must have the same length")
        if not isinstance(a, da.Array):
            a = da.from_array(a, chunks=(rows, *a.shape[1:]))
        elif known and a.chunks[0] != rows:
            a = a.rechunk({0: rows})
        if any(len(c) != 1 for c in a.chunks[1:]):  # a sample's values in one block
            a = a.rechunk({k: -1 for k in range(1, a.ndim)})
        arrays[nm] = a
    if known and n == 0:
        raise ValueError("the data columns are empty: a reduction needs at least one sample")
    per_col = [arrays[nm].to_delayed().reshape(-1) for nm in names]
    blocks = tuple(zip(*per_col, strict=True))
    offsets = tuple(int(o) for o in np.cumsum((0, *rows[:-1]))) if known else (None,) * len(rows)
    return Chunks(names, tuple(arrays[nm] for nm in names), blocks, offsets,
                  int(n) if known else None)


def _client():
    """The distributed client in use, or None (no ``distributed``, or no client: Dask's local
    scheduler)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _by_worker(c: Chunks) -> dict:
    """``groups`` (chunk numbers by the worker holding a chunk's blocks) and their
    ``resident`` holders; nothing without a distributed client or when a block is not in
    memory."""
    from distributed import futures_of, wait

    client = _client()
    futures = {f.key: f for f in futures_of(list(c.arrays))}
    if not futures:
        return {}
    wait(list(futures.values()))
    who = client.who_has(list(futures.values()))
    groups: dict[str, list[int]] = {}
    for i, blocks in enumerate(c.blocks):
        if not all(b.key in futures for b in blocks):
            return {}
        holders = [set(who.get(b.key, ())) for b in blocks]
        if not all(holders):
            return {}
        # a worker holding every block of the chunk, else the first block's (one transfer)
        groups.setdefault(min(set.intersection(*holders) or holders[0]), []).append(i)
    by_worker = sorted(groups.items())
    per_chunk = tuple(tuple(futures[b.key] for b in blocks) for blocks in c.blocks)
    return {"groups": tuple(tuple(g) for _, g in by_worker),
            "resident": Resident.start(client, by_worker, per_chunk, c.offsets)}
