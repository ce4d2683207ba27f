"""Sample passes on threads, without compiling a ``prange`` loop.

A scalar (or fused) kernel's threaded call cuts the samples into the chunks of its module's
``prange`` twin (``_par_g``...: ``nc = min(max(N // CHUNK, 1), MAX_CHUNKS)``) and hands each
thread a run of them: the generated ``_rows_g`` (serial, ``nogil``) writes each chunk's sums
into its row, and the rows are added in chunk order, so the result is the ``prange`` twin's,
bit for bit, for any number of threads. What this saves is the compile: a ``parallel=True``
function costs Numba about 1.3 s more than its serial body (a 5-parameter data loss's first
``value_and_grad`` on 100,000 samples: 2.6-2.9 s with the ``prange`` twin, 1.3-1.4 s serial).
A residual kernel's calls (:func:`residual_calls`) run its module's ``nogil`` chunk functions
the same way (in order on the calling thread below the threshold), so they are its serial
drivers' bits, and a first least-squares fit compiles neither the drivers nor their ``prange``
twins (cold, 100,000 samples: 4.4 s, now 1.5-2.0 s; 1,000 samples: 2.7 s, now 1.7 s).
The threads are helpers of this process (as many in all as Numba's thread count, which the
BLAS thread policy sets: :func:`symgrad.runtime.blas.use_threads`); the calling thread runs
the first share of the chunks itself (:func:`run_chunks`).

>>> import numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> f = sg.compile(sg.mean((a * t - 1.0)**2), parallel=True)
>>> tt = np.linspace(0.0, 1.0, 10_000)
>>> f.value(np.array([2.0]), t=tt) == f.module.value_parallel(np.array([2.0]), tt, None)
True
"""

from __future__ import annotations

import os
import queue
import threading
import types
from collections.abc import Callable

import numba
import numpy as np

from ..backend.numba.residual_normal import normal_totals
from ..backend.numba.skeleton import CHUNK, MAX_CHUNKS

__all__ = ["residual_calls", "run_chunks", "sample_pass", "threaded"]


class _Helpers:
    """Threads 1, 2... of the passes (the calling thread is 0), each serving its own queue, so
    that the same thread takes the same share of the samples call after call: on a 2-core EPYC
    VM a cheap pass over 10^6 samples took 290-320 us when the threads took any runs and
    230-245 us when each kept to its half (its data stays in its core's cache)."""

    def __init__(self, k: int) -> None:
        self.queues = [queue.SimpleQueue() for _ in range(k)]
        for w, q in enumerate(self.queues, 1):
            threading.Thread(target=self._serve, args=(q, w), name=f"symgrad-{w}",
                             daemon=True).start()

    @staticmethod
    def _serve(q: queue.SimpleQueue, w: int) -> None:
        while True:
            q.get()(w)


_HELPERS: list[_Helpers] = []
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_HELPERS.clear)


def _helpers() -> _Helpers:
    if not _HELPERS:
        _HELPERS.append(_Helpers(max(1, numba.config.NUMBA_NUM_THREADS - 1)))
    return _HELPERS[0]


def n_chunks(n: int) -> int:
    """The chunks of a pass over ``n`` samples, as the generated drivers cut them."""
    return min(max(n // CHUNK, 1), MAX_CHUNKS)


def run_chunks(work: Callable[[int, int], None], nc: int) -> None:
    """``work(k0, k1)`` for runs of chunks ``k0..k1-1`` covering ``0..nc-1``, on this thread
    and the helpers (as many in all as Numba's thread count); returns when all have run.

    Thread ``w`` takes the runs of its own contiguous share from the front, one at a time;
    a thread done with its share takes the others' from the back. So a helper woken late
    (tens of microseconds on an idle core) or slowed by another process finds its share
    taken instead of making this thread wait for it, and on a quiet machine each thread
    reads the same samples every call."""
    workers = max(1, min(numba.get_num_threads(), nc))
    step = max(1, nc // (4 * workers))
    runs = -(-nc // step)
    front = [w * runs // workers for w in range(workers)]  # thread w's share: front..back-1
    back = [*front[1:], runs]
    state, lock, finished = [0], threading.Lock(), threading.Event()  # runs done
    errors: list[BaseException] = []

    def take(w: int, ran: bool) -> int | None:
        with lock:
            if ran:
                state[0] += 1
                if state[0] == runs:
                    finished.set()
            if front[w] < back[w]:
                front[w] += 1
                return front[w] - 1
            v = max(range(workers), key=lambda u: back[u] - front[u])
            if front[v] < back[v]:
                back[v] -= 1
                return back[v]
            return None

    def claim(w: int) -> None:
        try:
            k = take(w, False)
            while k is not None:
                work(k * step, min(nc, (k + 1) * step))
                k = take(w, True)
        except BaseException as e:  # re-raised by the calling thread
            errors.append(e)
            finished.set()

    if workers > 1:
        for q in _helpers().queues[:workers - 1]:
            q.put(claim)
    claim(0)
    finished.wait()  # set at once unless another thread is on the last run
    if errors:
        raise errors[0]


def sample_pass(rows: Callable, head: tuple, tail: tuple, n: int, size: int) -> np.ndarray:
    """The sums of a pass over ``n`` samples: ``rows(*head, *tail, n, nc, lo, hi, out)`` run
    by this thread and the helpers for runs of the ``nc`` chunks (:func:`run_chunks`), the
    rows added in chunk order."""
    nc = n_chunks(n)
    out = np.zeros((nc, size))
    run_chunks(lambda k0, k1: rows(*head, *tail, n, nc, k0, k1, out), nc)
    acc = np.zeros(size)
    _add_rows(out, acc)
    return acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _add_rows(rows: np.ndarray, acc: np.ndarray) -> None:
    """``acc += rows[0] + rows[1] + ...`` element by element in row order, as the ``prange``
    twin adds them (NumPy's ``sum(axis=0)`` sums pairwise where the rows are one number wide)."""
    for c in range(rows.shape[0]):
        for m in range(rows.shape[1]):
            acc[m] += rows[c, m]


def threaded(m: types.ModuleType, n: int, k: int) -> types.SimpleNamespace:
    """The threaded calls of a scalar module ``m`` (``n`` parameters, ``k`` sums over samples)
    with the signatures of its serial ones; arguments are checked by the kernel beforehand."""

    def value(x, *args):
        N = m._n_samples(*args)
        return m._finish_e(x, sample_pass(m._rows_e, (x,), args, N, k), N)

    def value_and_grad(x, g, *args):
        N = m._n_samples(*args)
        return m._finish_g(x, sample_pass(m._rows_g, (x,), args, N, k + k * n), N, g)

    def grad(x, g, *args):
        value_and_grad(x, g, *args)
        return g

    def hvp(x, v, out, *args):
        N = m._n_samples(*args)
        m._finish_h(x, v, sample_pass(m._rows_h, (x, v), args, N, k + 2 * k * n), N, out)
        return out

    def hessian(x, H, *args):  # one HVP per unit vector, symmetrised (as the module's)
        e = np.zeros(x.shape[0])
        for j in range(x.shape[0]):
            e[j] = 1.0
            hvp(x, e, H[j], *args)
            e[j] = 0.0
        H[...] = 0.5 * (H + H.T)
        return H

    return types.SimpleNamespace(value=value, grad=grad, value_and_grad=value_and_grad,
                                 hvp=hvp, hessian=hessian)


def residual_calls(m: types.ModuleType, n_params: int, threads: bool = True
                      ) -> types.SimpleNamespace:
    """The calls of a residual module ``m`` with data columns that a kernel makes, with the
    signatures of its serial drivers (arguments checked by the kernel beforehand): its
    ``nogil`` chunk functions on the serial drivers' chunks (one call per run of chunks where
    each sample writes its own rows; ``_vjp_run``/``_normal_run`` where each chunk sums into
    its row of ``part``), on threads (:func:`run_chunks`) or, ``threads=False``, in one run
    on this thread. Every result is the serial driver's, bit for bit; the drivers themselves,
    which check their arguments for standalone use, are never compiled (1.2 s of a first
    small fit, cold)."""
    P, T = n_params, normal_totals(n_params)
    run = run_chunks if threads else (lambda work, nc: work(0, nc))

    def per_sample(chunk: Callable[[int, int], None], n: int, first: int = 0) -> None:
        nc = n_chunks(n)
        run(lambda k0, k1: chunk(first + k0 * n // nc, first + k1 * n // nc), nc)

    def residuals(x, out, *cols):
        per_sample(lambda lo, hi: m._residuals_chunk(x, lo, hi, out, *cols), cols[0].shape[0])
        return out

    def rows(x, lo, hi, J, r, *cols):
        per_sample(lambda a, b: m._rows_chunk(x, a, b, lo, J, r, *cols), hi - lo, lo)
        return J

    def jvp(x, v, out, *cols):
        per_sample(lambda lo, hi: m._jvp_chunk(x, v, lo, hi, out, *cols), cols[0].shape[0])
        return out

    def vjp(x, u, out, *cols):
        N = cols[0].shape[0]
        nc = n_chunks(N)
        part = np.zeros((nc, P))
        run(lambda k0, k1: m._vjp_run(x, u, N, nc, k0, k1, part, *cols), nc)
        out[:] = 0.0
        _add_rows(part, out)
        return out

    def normal(x, A, bv, js, rs, *cols):
        N = cols[0].shape[0]
        nc = n_chunks(N)
        part = np.zeros((nc, 2, T))
        run(lambda k0, k1: m._normal_run(x, js, rs, N, nc, k0, k1, part, *cols), nc)
        return m._normal_finish(part, A, bv)

    return types.SimpleNamespace(residuals=residuals, rows=rows, jvp=jvp, vjp=vjp,
                                 normal=normal)
