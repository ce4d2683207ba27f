"""Persisted chunks served by one long-lived actor per worker: calls that skip the scheduler.

A task costs a scheduler round trip (about 10 ms on a 2-core machine, whatever it computes); a
Dask actor's method is called from the client on the worker directly (about 1.5 ms). So after
``persist()`` each worker that holds chunks gets a :class:`~symgrad.distributed.worker.Holder`,
constructed with that worker's blocks (references to the arrays the worker keeps, not copies),
and a call asks every holder at once and adds their rows in worker order (a fixed order, so
results are reproducible). A holder's references keep its chunks in memory for as long as the
bound kernel lives (Dask cannot spill them to disk meanwhile); dropping the kernel releases them.

Actors do not survive their worker. When one is lost (its future is no longer finished, or a
call raises OSError), :meth:`Resident.reduce` returns None and stays so; the caller then runs the
call as tasks, which Dask recomputes from the chunks' graph, and the next call regroups the
chunks with new holders (:meth:`~symgrad.distributed.columns.Chunks.recovered`).

>>> import dask.array as da, symgrad as sg
>>> from distributed import Client
>>> client = Client(processes=False, n_workers=1, dashboard_address=None,
...                 worker_dashboard_address=None)
>>> a = sg.params("a"); t = sg.data("t")
>>> fb = sg.compile(sg.mean((a - t)**2)).bind(t=da.arange(8.0, chunks=3)).persist()
>>> fb.chunks.resident.lost, fb.value([3.5]), fb.on_chunks([2]).value([6.5])
(False, 5.25, 0.25)
>>> client.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .worker import Holder, ModuleSpec, add

__all__ = ["Resident"]


class Resident:
    """The holders of a set of persisted chunks, one per worker (client side)."""

    def __init__(self, futures: Sequence, actors: Sequence, held: Sequence[Sequence[int]],
                 workers: Sequence[str]) -> None:
        self._futures, self._actors = tuple(futures), tuple(actors)
        self._held = tuple(frozenset(g) for g in held)  # chunk numbers, by holder
        #: the address of each holder's worker
        self.workers = tuple(workers)
        self._lost = False

    @classmethod
    def start(cls, client, by_worker: Sequence[tuple[str, Sequence[int]]], futures: Sequence,
              offsets: Sequence[int | None]) -> Resident:
        """A holder on each worker ``w`` of ``by_worker`` for its chunks ``g`` (``futures[i]``
        are chunk ``i``'s blocks, all in ``w``'s memory)."""
        threads = client.nthreads()
        futs = [client.submit(Holder, tuple((i, offsets[i], len(futures[i])) for i in g),
                              threads.get(w, 1), *(f for i in g for f in futures[i]),
                              actor=True, workers=[w],
                              allow_other_workers=False, pure=False) for w, g in by_worker]
        return cls(futs, [f.result() for f in futs], [g for _, g in by_worker],
                   [w for w, _ in by_worker])

    @property
    def lost(self) -> bool:
        """Whether a holder's worker is gone (then these holders are never used again)."""
        self._lost = self._lost or any(f.status != "finished" for f in self._futures)
        return self._lost

    def reduce(self, spec: ModuleSpec, chunk: Callable, args: tuple, kwargs: dict,
               only: tuple | None = None) -> np.ndarray | None:
        """The sum over the held chunks (those numbered in ``only``, if given, a chunk numbered
        twice counted twice) of ``chunk(spec, *args, where, *blocks, **kwargs)``, or None when
        a holder is lost (errors of ``chunk`` itself are raised as they are). Only the holders
        of those chunks are asked."""
        if self.lost:
            return None
        try:
            calls = [a.run(spec, chunk, args, kwargs, only)
                     for a, held in zip(self._actors, self._held, strict=True)
                     if only is None or not held.isdisjoint(only)]
        except RuntimeError:  # "Worker holding Actor was lost", since the check above
            if not self.lost:
                raise
            return None
        try:
            rows = [c.result() for c in calls]
        except OSError:  # "Unable to contact Actor's worker": it died during the call
            self._lost = True
            return None
        return add(*rows)
