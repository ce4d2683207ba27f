"""Extended Rosenbrock with an indexed sum: build time and value_and_grad against baselines.

    python benchmarks/ext_rosenbrock.py

Prints the build time (SymPy + codegen + Numba compile, cold cache, in a fresh process) for
several n (one module serves all n, so it should not depend on n), and value_and_grad time
against a hand-written @njit loop at n = 1e3 and 1e6 (target: within 1.3x). Anchors, when
installed: JAX jit value_and_grad; SymPy diff + lambdify of the unrolled sum (n <= 100).

A second table does the same for a loss that also reads element-wise data columns,
lam^2 sum w[i] (x[i] - y[i])^2 + sum (x[i+1] - x[i])^2 (smoothing noisy y with weights w), through
``bind`` (columns validated once) and through per-call keyword columns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit

import numba
import numpy as np
from report import record

BUILD = textwrap.dedent("""
    import time, numpy as np
    t0 = time.perf_counter()
    import symgrad as sg
    t1 = time.perf_counter()
    x = sg.params("x", indexed=True); i = sg.index("i")
    f = sg.compile(sg.sum(100*(x[i+1] - x[i]**2)**2 + (1 - x[i])**2, (i, 0, x.length - 1)))
    t2 = time.perf_counter()
    z = np.full({n}, 0.5); g = np.empty({n})
    f.value_and_grad(z, g)
    t3 = time.perf_counter()
    print(t1 - t0, t2 - t1, t3 - t2)
""")


@numba.njit(fastmath={"reassoc", "contract"})
def hand_vg(x, g):
    s = 0.0
    g[:] = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        s += 100.0 * a * a + b * b
        g[i] += -400.0 * x[i] * a - 2.0 * b
        g[i + 1] += 200.0 * a
    return s


@numba.njit(fastmath={"reassoc", "contract"})
def hand_smooth_vg(z, g, y, w):
    """Two loops, as the loss reads."""
    lam = z[0]
    s0 = 0.0
    s1 = 0.0
    g[:] = 0.0
    n = z.shape[0] - 1
    for i in range(n):
        r = z[1 + i] - y[i]
        s0 += w[i] * r * r
        g[1 + i] += 2.0 * lam * lam * w[i] * r
    for i in range(n - 1):
        d = z[2 + i] - z[1 + i]
        s1 += d * d
        g[1 + i] -= 2.0 * d
        g[2 + i] += 2.0 * d
    g[0] = 2.0 * lam * s0
    return lam * lam * s0 + s1


@numba.njit(fastmath={"reassoc", "contract"})
def hand_smooth_vg_fused(z, g, y, w):
    """One fused pass over views (no offset arithmetic in the loop)."""
    lam = z[0]
    x = z[1:]
    gx = g[1:]
    n = x.shape[0]
    c = 2.0 * lam * lam
    s0 = 0.0
    s1 = 0.0
    for i in range(n):
        r = x[i] - y[i]
        s0 += w[i] * r * r
        gx[i] = c * w[i] * r
    for i in range(n - 1):
        d = x[i + 1] - x[i]
        s1 += d * d
        gx[i] -= 2.0 * d
        gx[i + 1] += 2.0 * d
    g[0] = 2.0 * lam * s0
    return lam * lam * s0 + s1


def best(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def build_time(n: int) -> list[tuple[float, float, float]]:
    """(import symgrad, sg.compile: SymPy + codegen + write + import + Numba, first call), for
    a fresh process on an empty cache directory, then a second process on the same directory."""
    runs = []
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "SYMGRAD_CACHE_DIR": d}
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", BUILD.format(n=n)], env=env,
                                 capture_output=True, text=True, check=True)
            a, b, c = map(float, out.stdout.split()[-3:])
            runs.append((a, b, c))
    return runs


def main() -> None:
    import symgrad as sg

    print("build in a fresh process (target: SymPy + codegen + Numba < 2 s cold, independent "
          "of n)")
    print("                   import symgrad   sg.compile   first call   build (compile + call)")
    for n in (10, 1000, 1_000_000):
        for label, (a, b, c) in zip(("cold", "warm"), build_time(n), strict=True):
            print(f"  n = {n:>9,} {label}  {a:6.2f} s      {b:6.2f} s   {c:6.2f} s     "
                  f"{b + c:6.2f} s")
            if n == 1_000_000:
                record("ext_rosenbrock", f"extended Rosenbrock build, {label} process, n = 1e6",
                       b + c, unit="s", target=2.0 if label == "cold" else 0.5)
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    f = sg.compile(sg.sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2,
                          (i, 0, x.length - 1)))

    print("\nvalue_and_grad(x, out=g)        symgrad      hand @njit    ratio (target <= 1.3)")
    for n in (1000, 1_000_000):
        z = np.random.default_rng(0).normal(size=n)
        g1, g2 = np.empty(n), np.empty(n)
        hand_vg(z, g2)
        f.value_and_grad(z, g1)
        assert np.allclose(g1, g2, rtol=1e-12, atol=1e-9)
        number = 20000 if n <= 1000 else 20
        ts = best(lambda z=z, g1=g1: f.value_and_grad(z, g1), number)
        th = best(lambda z=z, g2=g2: hand_vg(z, g2), number)
        print(f"  n = {n:>9,}            {ts * 1e6:9.2f} us  {th * 1e6:9.2f} us  {ts / th:6.2f}x")
        record("ext_rosenbrock", f"extended Rosenbrock value_and_grad / hand @njit loop, "
               f"n = {n:.0e}", ts / th, unit="x", target=1.3)

    smoothing(sg)
    print("\nanchors")
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        def jf(z):
            return jnp.sum(100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)

        jvg = jax.jit(jax.value_and_grad(jf))
        z = jnp.asarray(np.random.default_rng(0).normal(size=1000))
        jvg(z)[1].block_until_ready()
        tj = best(lambda: jvg(z)[1].block_until_ready(), 2000)
        print(f"  JAX jit value_and_grad, n = 1000: {tj * 1e6:.2f} us")
    except ImportError:
        print("  JAX: not installed (about 12.8 us at n = 1000 on these machines)")
    import sympy as sp

    for n in (10, 100):
        q = sp.symbols(f"q0:{n}", real=True)
        expr = sum(100 * (q[k + 1] - q[k] ** 2) ** 2 + (1 - q[k]) ** 2 for k in range(n - 1))
        t0 = time.perf_counter()
        grads = [sp.diff(expr, v) for v in q]
        lam = sp.lambdify([q], [expr, *grads], "numpy")
        tb = time.perf_counter() - t0
        z = np.random.default_rng(0).normal(size=n)
        tc = best(lambda lam=lam, z=z: lam(z), 200)
        print(f"  SymPy diff + lambdify (unrolled), n = {n}: build {tb:.2f} s, "
              f"call {tc * 1e6:.1f} us")


def smoothing(sg) -> None:
    x = sg.params("x", indexed=True)
    lam = sg.params("lam")
    y, w = sg.data("y w", indexed=True)
    i = sg.index("i")
    f = sg.compile(lam**2 * sg.sum(w[i] * (x[i] - y[i]) ** 2, (i, 0, x.length))
                   + sg.sum((x[i + 1] - x[i]) ** 2, (i, 0, x.length - 1)))
    print("\nwith element-wise data columns y[i], w[i] (smoothing), value_and_grad:")
    print("                    symgrad bind   symgrad kwargs   hand @njit   ratio bind / kwargs"
          " (target <= 1.3)")
    for n in (1000, 1_000_000):
        rng = np.random.default_rng(1)
        z = np.concatenate([[0.8], rng.normal(size=n)])
        yy, ww = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
        g1, g2 = np.empty(n + 1), np.empty(n + 1)
        fb = f.bind(y=yy, w=ww)
        v1 = fb.value_and_grad(z, g1)[0]
        v2 = hand_smooth_vg(z, g2, yy, ww)
        assert abs(v1 - v2) <= 1e-12 * abs(v2) and np.allclose(g1, g2, rtol=1e-12, atol=1e-9)
        number = 20000 if n <= 1000 else 20
        tb = best(lambda z=z, g1=g1, fb=fb: fb.value_and_grad(z, g1), number)
        tk = best(lambda z=z, g1=g1, yy=yy, ww=ww: f.value_and_grad(z, g1, y=yy, w=ww), number)
        hand_smooth_vg_fused(z, g2, yy, ww)
        assert np.allclose(g1, g2, rtol=1e-12, atol=1e-9)
        th = min(best(lambda z=z, g2=g2, yy=yy, ww=ww, h=h: h(z, g2, yy, ww), number)
                 for h in (hand_smooth_vg, hand_smooth_vg_fused))  # the faster hand version
        print(f"  n = {n:>9,}   {tb * 1e6:9.2f} us   {tk * 1e6:9.2f} us   {th * 1e6:9.2f} us"
              f"   {tb / th:5.2f}x / {tk / th:5.2f}x")
        record("ext_rosenbrock", f"smoothing loss (element-wise data), data per call / faster "
               f"hand loop, n = {n:.0e}", tk / th, unit="x", target=1.3 if n >= 1e6 else None)


if __name__ == "__main__":
    main()
