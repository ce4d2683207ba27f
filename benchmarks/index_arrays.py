"""Windows and gathers at size: a 512 x 512 grid energy and a 1e6-entry matrix factorisation.

    OPENBLAS_NUM_THREADS=1 python benchmarks/index_arrays.py [--no-build]

For each loss: value and gradient against a NumPy reference (slicing, np.add.at), the time of one
value_and_grad against the faster of a plain and a ``fastmath`` hand-written @njit loop (targets:
grid within 1.3x, factorisation within 1.5x), and the cold build time (SymPy + codegen + Numba
compile of value_and_grad, fresh process, empty cache, ``parallel=False``) at two sizes, which
should not differ, with the first default call on the large grid (threaded core compiled too).
Then both with ``parallel=True`` (threaded cores) timed with 1 and 2 Numba threads in one run
(target: 2 threads at least 1.6x faster; the results are the same bits), and through the public
call with the default ``parallel=None`` (large calls run the threaded cores) against
``parallel=False``, and with 1 and 2 threads (``--default`` runs this part alone). On a machine that
other processes keep busy, GNU OpenMP (Numba's default threading layer here) stops spinning
between parallel regions and each region waits for its second thread to be scheduled (17 ms
instead of 0.1 ms for the grid at load 5 on 2 cores); ``GOMP_SPINCOUNT=10000000`` measures the
threads themselves there (symgrad's policy gives a busy machine one thread anyway).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit

import numba
import numpy as np
from report import record

import symgrad as sg

H = W = 512
M, NN, K, E = 10_000, 5_000, 16, 1_000_000


def _grid_hand(fastmath):
    @numba.njit(fastmath=fastmath)
    def vg(x, g, h, w):
        u = x.reshape((h, w))
        gu = g.reshape((h, w))
        gu[:] = 0.0
        s = 0.0
        for i in range(h):
            for j in range(w):
                if i + 1 < h:
                    d = u[i + 1, j] - u[i, j]
                    s += d * d
                    gu[i + 1, j] += 2.0 * d
                    gu[i, j] -= 2.0 * d
                if j + 1 < w:
                    d = u[i, j + 1] - u[i, j]
                    s += d * d
                    gu[i, j + 1] += 2.0 * d
                    gu[i, j] -= 2.0 * d
        return s

    return vg


def _grid_gather(fastmath):
    """The same in gather form: each gradient entry reads its neighbours (no scattered writes)."""

    @numba.njit(fastmath=fastmath)
    def vg(x, g, h, w):
        u = x.reshape((h, w))
        gu = g.reshape((h, w))
        s = 0.0
        for i in range(h):
            for j in range(w):
                gij = 0.0
                if i + 1 < h:
                    d = u[i + 1, j] - u[i, j]
                    s += d * d
                    gij -= 2.0 * d
                if i >= 1:
                    gij += 2.0 * (u[i, j] - u[i - 1, j])
                if j + 1 < w:
                    d = u[i, j + 1] - u[i, j]
                    s += d * d
                    gij -= 2.0 * d
                if j >= 1:
                    gij += 2.0 * (u[i, j] - u[i, j - 1])
                gu[i, j] = gij
        return s

    return vg


def _mf_hand(fastmath):
    @numba.njit(fastmath=fastmath)
    def vg(x, g, rows, cols, R, m, n, k):
        U = x[:m * k].reshape((m, k))
        V = x[m * k:].reshape((n, k))
        gU = g[:m * k].reshape((m, k))
        gV = g[m * k:].reshape((n, k))
        g[:] = 0.0
        s = 0.0
        c = 2.0 / rows.shape[0]
        for e in range(rows.shape[0]):
            a, b = rows[e], cols[e]
            p = 0.0
            for q in range(k):
                p += U[a, q] * V[b, q]
            r = p - R[e]
            s += r * r
            for q in range(k):
                gU[a, q] += c * r * V[b, q]
                gV[b, q] += c * r * U[a, q]
        return s / rows.shape[0]

    return vg


def best(fn, number: int = 5, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def grid() -> None:
    u = sg.params("u", shape=(H, W))
    f = sg.compile(sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2))
    x = np.random.default_rng(0).standard_normal(H * W)
    g, gh = np.empty_like(x), np.empty_like(x)
    args = f.data_args({})
    val = f.jit.value_and_grad(x, g, *args)
    U = x.reshape(H, W)
    ref = ((U[1:] - U[:-1]) ** 2).sum() + ((U[:, 1:] - U[:, :-1]) ** 2).sum()
    G = np.zeros((H, W))
    for d, lo, hi in ((U[1:] - U[:-1], np.s_[1:], np.s_[:-1]),
                      (U[:, 1:] - U[:, :-1], np.s_[:, 1:], np.s_[:, :-1])):
        G[lo] += 2 * d
        G[hi] -= 2 * d
    print(f"grid energy {H} x {W}: value rel err {abs(val - ref) / ref:.1e}, gradient max rel "
          f"err {np.abs(g - G.ravel()).max() / np.abs(G).max():.1e} (NumPy slicing)")
    times = {}
    for name, hand in (("plain", _grid_hand(False)), ("fastmath", _grid_hand(True)),
                       ("gather, plain", _grid_gather(False)),
                       ("gather, fastmath", _grid_gather(True))):
        hand(x, gh, H, W)
        assert np.allclose(gh, g, rtol=1e-12, atol=1e-12)
        times[name] = best(lambda hand=hand: hand(x, gh, H, W))
        print(f"  {'hand @njit (' + name + ')':<32} {times[name] * 1e3:8.3f} ms")
    t = best(lambda: f.jit.value_and_grad(x, g, *args))
    print(f"  {'symgrad f.jit.value_and_grad':<32} {t * 1e3:8.3f} ms   "
          f"{t / min(times.values()):.2f}x the fastest hand loop (target <= 1.3x)")
    record("index_arrays", f"grid energy {H} x {W} (shifted slices): value_and_grad / fastest "
           "of four hand loops", t / min(times.values()), unit="x", target=1.3)


def matrix_factorisation() -> None:
    rng = np.random.default_rng(1)
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    f = sg.compile(sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2))
    data = {"i": rng.integers(0, M, E), "j": rng.integers(0, NN, E), "r": rng.standard_normal(E)}
    x = 0.3 * rng.standard_normal(f.n_params)
    g, gh = np.empty_like(x), np.empty_like(x)
    args = f.data_args(data)
    val = f.jit.value_and_grad(x, g, *args)
    Uv, Vv = x[:M * K].reshape(M, K), x[M * K:].reshape(NN, K)
    e = (Uv[data["i"]] * Vv[data["j"]]).sum(1) - data["r"]
    gU, gV = np.zeros_like(Uv), np.zeros_like(Vv)
    np.add.at(gU, data["i"], 2 * e[:, None] * Vv[data["j"]] / E)
    np.add.at(gV, data["j"], 2 * e[:, None] * Uv[data["i"]] / E)
    gref = np.concatenate([gU.ravel(), gV.ravel()])
    print(f"matrix factorisation {M} x {NN}, rank {K}, {E:.0e} entries: value rel err "
          f"{abs(val - (e**2).mean()) / (e**2).mean():.1e}, gradient max rel err "
          f"{np.abs(g - gref).max() / np.abs(gref).max():.1e} (np.add.at)")
    times = {}
    for name, hand in (("plain", _mf_hand(False)), ("fastmath", _mf_hand(True))):
        hand(x, gh, data["i"], data["j"], data["r"], M, NN, K)
        assert np.allclose(gh, g, rtol=1e-10, atol=1e-15)
        times[name] = best(lambda hand=hand: hand(x, gh, data["i"], data["j"], data["r"],
                                                  M, NN, K), number=2)
        print(f"  {'hand @njit (' + name + ')':<32} {times[name] * 1e3:8.2f} ms")
    t = best(lambda: f.jit.value_and_grad(x, g, *args), number=2)
    print(f"  {'symgrad f.jit.value_and_grad':<32} {t * 1e3:8.2f} ms   "
          f"{t / min(times.values()):.2f}x the faster hand loop (target <= 1.5x)")
    record("index_arrays", f"matrix factorisation {E:.0e} entries of {M} x {NN}, rank {K} "
           "(gathers): value_and_grad / faster hand loop", t / min(times.values()), unit="x",
           target=1.5)


def _grid_loss(n: int):
    u = sg.params("u", shape=(n, n))
    return sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2)


def threads() -> None:
    """``parallel=True`` kernels with 1 and 2 Numba threads, in alternating rounds of one run
    (the same bits either way; target: 2 threads at least 1.6x faster than 1)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("\nthreads: Numba has a single thread here (NUMBA_NUM_THREADS), skipped")
        return
    rng = np.random.default_rng(2)
    fg = sg.compile(_grid_loss(H), parallel=True)
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    fm = sg.compile(sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2), parallel=True)
    data = {"i": rng.integers(0, M, E), "j": rng.integers(0, NN, E), "r": rng.standard_normal(E)}
    print(f"\nthreads (sg.compile(..., parallel=True); f.jit.value_and_grad with "
          f"numba.set_num_threads; {os.cpu_count()} cores):")
    for label, f, x, args, number in (
            (f"grid energy {H} x {W}", fg, rng.standard_normal(fg.n_params), fg.data_args({}), 5),
            (f"matrix factorisation {E:.0e} entries", fm, 0.3 * rng.standard_normal(fm.n_params),
             fm.data_args(data), 2)):
        g = np.empty_like(x)
        vg = f.jit.value_and_grad
        out, t = {}, {1: np.inf, 2: np.inf}
        for _ in range(3):  # alternating rounds: the machine's load falls on both counts
            for nt in (1, 2):
                numba.set_num_threads(nt)
                out[nt] = (vg(x, g, *args), g.copy())
                t[nt] = min(t[nt], best(lambda vg=vg, x=x, g=g, args=args: vg(x, g, *args),
                                        number=number, repeat=3))
        same = out[1][0] == out[2][0] and np.array_equal(out[1][1], out[2][1])
        print(f"  {label:<36} 1 thread {t[1] * 1e3:8.2f} ms, 2 threads {t[2] * 1e3:8.2f} ms: "
              f"{t[1] / t[2]:.2f}x (target >= 1.6x); same bits: {same}")
        record("index_arrays", f"{label}: value_and_grad with 1 / 2 Numba threads "
               "(parallel=True)", t[1] / t[2], unit="x", target=1.6, better="higher")


def default_path() -> None:
    """What default arguments give: ``f.value_and_grad(x, out=g, **data)`` of the kernel compiled
    with ``parallel=None`` (a large call runs the threaded cores on the threads the BLAS policy
    gives: all the cores of a quiet machine, one of a busy one) against ``parallel=False`` (the
    serial cores: the default before), in alternating rounds of one run; then the default kernel
    with ``sg.set_blas_threads(1)`` and ``(2)`` (the same bits; target: 2 threads at least 1.6x
    faster)."""
    rng = np.random.default_rng(3)
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    mf = sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2)
    data = {"i": rng.integers(0, M, E), "j": rng.integers(0, NN, E), "r": rng.standard_normal(E)}
    print(f"\ndefault path (f.value_and_grad(x, out=g, **data); {os.cpu_count()} cores, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'by the policy')}):")
    for label, loss, d, number in ((f"grid energy {H} x {W}", _grid_loss(H), {}, 5),
                                   (f"matrix factorisation {E:.0e} entries", mf, data, 2)):
        fs = {p: sg.compile(loss, parallel=p) for p in (None, False)}
        x = 0.3 * rng.standard_normal(fs[None].n_params)
        g = np.empty_like(x)
        out, t = {}, {}
        for _ in range(3):  # alternating rounds: the machine's load falls on every variant
            for key, f, nt in ((False, fs[False], None), (None, fs[None], None),
                               (1, fs[None], 1), (2, fs[None], 2)):
                sg.set_blas_threads(nt)
                out[key] = (f.value_and_grad(x, g, **d)[0], g.copy())
                t[key] = min(t.get(key, np.inf),
                             best(lambda f=f, x=x, g=g, d=d: f.value_and_grad(x, g, **d),
                                  number=number, repeat=3))
        sg.set_blas_threads(None)
        same = out[1][0] == out[2][0] and np.array_equal(out[1][1], out[2][1])
        close = np.allclose(out[None][1], out[False][1], rtol=1e-12, atol=1e-15) and abs(
            out[None][0] - out[False][0]) <= 1e-12 * abs(out[False][0])
        print(f"  {label:<36} parallel=False {t[False] * 1e3:8.2f} ms, default "
              f"{t[None] * 1e3:8.2f} ms: {t[False] / t[None]:.2f}x; default with 1 thread "
              f"{t[1] * 1e3:8.2f} ms, 2 threads {t[2] * 1e3:8.2f} ms: {t[1] / t[2]:.2f}x "
              f"(target >= 1.6x); same bits: {same}; equal to the serial ones to 1e-12: {close}")
        record("index_arrays", f"{label}: f.value_and_grad, parallel=False / default "
               "(parallel=None), default environment", t[False] / t[None], unit="x",
               better="higher")
        record("index_arrays", f"{label}: f.value_and_grad default (parallel=None) with 1 / 2 "
               "threads (sg.set_blas_threads)", t[1] / t[2], unit="x", target=1.6,
               better="higher")


BUILD = ("import time\nimport numpy as np, symgrad as sg\nt0 = time.perf_counter()\n{body}\n"
         "t1 = time.perf_counter()\nprint(f'{{t1 - t0:.2f}}')\n")
GRID = ('u = sg.params("u", shape=({n}, {n}))\n'
        'f = sg.compile(sg.sum((u[1:, :] - u[:-1, :])**2) + sg.sum((u[:, 1:] - u[:, :-1])**2),'
        ' parallel={par})\n'
        'f.value_and_grad(np.zeros({n} * {n}))')
MF = ('U, V = sg.params("U", shape=({n}, 16)), sg.params("V", shape=({n}, 16))\n'
      'i, j = sg.data("i j", dtype=int); r = sg.data("r")\n'
      'f = sg.compile(sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2), parallel={par})\n'
      'f.value_and_grad(np.zeros(2 * {n} * 16), i=np.arange(3), j=np.arange(3), r=np.ones(3))')


def _cold(body: str) -> float:
    """Seconds of ``body`` in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMGRAD_CACHE_DIR": cache}
        res = subprocess.run([sys.executable, "-c", BUILD.format(body=body)], env=env,
                             capture_output=True, text=True, check=True)
    return float(res.stdout)


def build_times() -> None:
    """The serial build (``parallel=False``) at two sizes, which should not differ; then the
    first default call on the 512 x 512 grid, which compiles the threaded core too."""
    print("\ncold build (SymPy + codegen + Numba compile of value_and_grad, parallel=False), "
          "fresh processes:")
    for label, body, sizes in (("grid energy", GRID, (64, 512)),
                               ("matrix factorisation", MF, (100, 10_000))):
        out = []
        for n in sizes:
            t = _cold(body.format(n=n, par=False))
            out.append(f"n = {n}: {t:.2f} s")
            record("index_arrays", f"{label} build, cold process, n = {n}", t, unit="s",
                   target=3.0)
        print(f"  {label:<22} {'; '.join(out)}")
    t = _cold(GRID.format(n=H, par=None))
    print(f"  grid energy {H} x {W}, default (parallel=None): {t:.2f} s (the first call "
          "compiles the threaded core too; cached on disk after)")
    record("index_arrays", f"grid energy {H} x {W} build and first default call (threaded "
           "core), cold process", t, unit="s")


if __name__ == "__main__":
    print(f"BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    if "--default" in sys.argv:
        default_path()
        sys.exit()
    grid()
    matrix_factorisation()
    threads()
    default_path()
    if "--no-build" not in sys.argv:
        build_times()
