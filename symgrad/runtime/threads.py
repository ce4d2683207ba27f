"""Sample passes on threads, without compiling a ``prange`` loop.

A scalar (or fused) kernel's threaded call cuts the samples into the chunks of its module's
``prange`` twin (``_par_g``...: ``nc = min(max(N // CHUNK, 1), MAX_CHUNKS)``) and hands each
thread a run of them: the generated ``_rows_g`` (serial, ``nogil``) writes each chunk's sums
into its row, and the rows are added in chunk order, so the result is the ``prange`` twin's,
bit for bit, for any number of threads. What this saves is the compile: a ``parallel=True``
function costs Numba about 1.3 s more than its serial body (a 5-parameter data loss's first
``value_and_grad`` on 100,000 samples: 2.6-2.9 s with the ``prange`` twin, 1.3-1.4 s serial).
A residual kernel's threaded calls (:func:`residual_threaded`) run its module's ``nogil``
chunk functions the same way, so they are its serial drivers' bits, and the first large
least-squares fit compiles no ``prange`` twin either (100,000 samples, cold: 4.4 s, now 1.75 s).
The threads are a pool of this process (as many as Numba's thread count, which the BLAS
thread policy sets: :func:`symgrad.runtime.blas.use_threads`); the calling thread runs the
first run of chunks itself.

>>> import numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> f = sg.compile(sg.mean((a * t - 1.0)**2), parallel=True)
>>> tt = np.linspace(0.0, 1.0, 10_000)
>>> f.value(np.array([2.0]), t=tt) == f.module.value_parallel(np.array([2.0]), tt, None)
True
"""

from __future__ import annotations

import itertools
import threading
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..backend.numba.skeleton import CHUNK, MAX_CHUNKS

__all__ = ["residual_threaded", "run_chunks", "sample_pass", "threaded"]

_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                        thread_name_prefix="symgrad"))
    return _POOL[0]


def n_chunks(n: int) -> int:
    """The chunks of a pass over ``n`` samples, as the generated drivers cut them."""
    return min(max(n // CHUNK, 1), MAX_CHUNKS)


def run_chunks(work: Callable[[int, int], None], nc: int) -> None:
    """``work(k0, k1)`` for runs of chunks ``k0..k1-1`` covering ``0..nc-1``, on this thread
    and the pool's (as many in all as Numba's thread count); returns when all have run.

    The runs are claimed one at a time: a thread the pool wakes late (tens of microseconds on
    an idle core) finds them all done and leaves, instead of this thread waiting for it."""
    workers = max(1, min(numba.get_num_threads(), nc))
    step = max(1, nc // (4 * workers))
    runs = -(-nc // step)
    claims, done, lock, finished = itertools.count(), [0], threading.Lock(), threading.Event()
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            for k in iter(claims.__next__, None):  # next() of a count is atomic under the GIL
                if k >= runs:
                    return
                work(k * step, min(nc, (k + 1) * step))
                with lock:
                    done[0] += 1
                    if done[0] == runs:
                        finished.set()
        except BaseException as e:  # re-raised by the calling thread
            errors.append(e)
            finished.set()

    for _ in range(workers - 1):
        _pool().submit(claim)
    claim()
    finished.wait()  # set at once unless another thread is on the last run
    if errors:
        raise errors[0]


def sample_pass(rows: Callable, head: tuple, tail: tuple, n: int, size: int) -> np.ndarray:
    """The sums of a pass over ``n`` samples: ``rows(*head, *tail, n, nc, lo, hi, out)`` run
    by this thread and the pool's for runs of the ``nc`` chunks (:func:`run_chunks`), the
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


def residual_threaded(m: types.ModuleType, n_params: int) -> types.SimpleNamespace:
    """The threaded calls of a residual module ``m`` with data columns, with the signatures of
    its serial entries (arguments checked by the kernel beforehand): the threads run the
    ``nogil`` chunk functions on runs of the serial drivers' chunks (one call per run where
    each sample writes its own rows; ``_vjp_run``/``_normal_run`` where each chunk sums into
    its row of ``part``), so every result is the serial driver's, bit for bit."""
    P = n_params
    T = P * (P + 1) // 2 + P + 1

    def per_sample(chunk: Callable[[int, int], None], n: int, first: int = 0) -> None:
        nc = n_chunks(n)
        run_chunks(lambda k0, k1: chunk(first + k0 * n // nc, first + k1 * n // nc), nc)

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
        run_chunks(lambda k0, k1: m._vjp_run(x, u, N, nc, k0, k1, part, *cols), nc)
        out[:] = 0.0
        _add_rows(part, out)
        return out

    def normal(x, A, bv, js, rs, *cols):
        N = cols[0].shape[0]
        nc = n_chunks(N)
        part = np.zeros((nc, 2, T))
        run_chunks(lambda k0, k1: m._normal_run(x, js, rs, N, nc, k0, k1, part, *cols), nc)
        return m._normal_finish(part, A, bv)

    return types.SimpleNamespace(residuals=residuals, rows=rows, jvp=jvp, vjp=vjp,
                                 normal=normal)
