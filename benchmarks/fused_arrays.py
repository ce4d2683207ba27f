"""Small array losses: one fused pass over the samples against the array code, by default.

    python benchmarks/fused_arrays.py

A small array loss (a linear or logistic model, softmax regression, a small layer) compiles by
default to a ``FusedKernel``: the loss unrolled for one sample and printed as one loop that
computes the loss and its gradient from a few locals per sample. ``fuse=False`` keeps the array
code (one loop or BLAS call per node and per derivative). For each loss at N = 10^6 samples,
float64, this prints one ``value_and_grad`` of

- the default kernel (fused; its ``prange`` variant above 50,000 samples, threads as the BLAS
  policy gives them), and the fused kernel on one thread (``parallel=False``);
- the array code (``fuse=False``), in the default environment;
- for the logistic loss, the fastest hand-written Numba loop (plain and ``fastmath``) on one
  thread: the fused one-thread kernel against it is the code-quality figure (target <= 1.3x,
  as ``data_loss``);

and the cold build (SymPy, codegen and Numba compile of value_and_grad, in a fresh process on an
empty cache) of the fused and the array kernels (target: under 3 s). Each contender is timed in
alternating rounds, best of 7.

The float32 rows (each loss, float32 data): the default ``dtype="float32"`` kernel (fused:
float32 data and per-sample arithmetic, float64 x and g) against the float32 array code
(``fuse=False``: float32 x and g), and against the fused float64 kernel on float64 data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import timeit

import numba
import numpy as np
from report import record

N = 1_000_000


def losses() -> dict:
    import symgrad as sg

    w = sg.params("w", shape=(10,))
    X10 = sg.data("X", shape=(10,))
    y = sg.data("y")
    W = sg.params("W", shape=(3, 4))
    b = sg.params("b", shape=(3,))
    X4 = sg.data("X", shape=(4,))
    C = sg.data("C", shape=(3,))
    z = W @ X4 + b
    V = sg.params("V", shape=(3, 3))
    c = sg.params("c", shape=(3,))
    X3 = sg.data("X", shape=(3,))
    Y = sg.data("Y", shape=(3,))
    return {
        "logistic, 10 features": sg.mean(sg.log(1 + sg.exp(-y * (X10 @ w)))),
        "softmax regression, 4 features, 3 classes":
            sg.mean(sg.logsumexp(z) - sg.sum(C * z, axis=0)),
        "tanh layer, 3 in, 3 out": sg.mean(sg.sum((sg.tanh(V @ X3 + c) - Y) ** 2, axis=0)),
    }


def data(name: str, rng, n: int = N) -> dict:
    if name.startswith("logistic"):
        return {"X": rng.standard_normal((n, 10)), "y": np.sign(rng.standard_normal(n))}
    if name.startswith("softmax"):
        return {"X": rng.standard_normal((n, 4)), "C": np.eye(3)[rng.integers(0, 3, n)]}
    return {"X": rng.standard_normal((n, 3)), "Y": rng.standard_normal((n, 3))}


def hand(fastmath: bool):
    @numba.njit(fastmath=fastmath, cache=False)
    def vg(w, X, y, g):
        n, p = X.shape
        g[:] = 0.0
        tot = 0.0
        for i in range(n):
            z = 0.0
            for j in range(p):
                z += X[i, j] * w[j]
            m = -y[i] * z
            e = np.exp(m)
            tot += np.log(1.0 + e)
            s = -y[i] * e / (1.0 + e)
            for j in range(p):
                g[j] += s * X[i, j]
        g /= n
        return tot / n

    return vg


def race(fns: dict, number: int = 3, repeat: int = 7) -> dict:
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k].append(timeit.timeit(fn, number=number) / number)
    return {k: min(v) for k, v in times.items()}


BUILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    import numpy as np, symgrad as sg
    from fused_arrays import data, losses
    loss = losses()[{name!r}]
    t = time.perf_counter()
    f = sg.compile(loss, fuse={fuse})
    f.value_and_grad(f.init(0), **data({name!r}, np.random.default_rng(0), 64))
    print(type(f).__name__, time.perf_counter() - t)
""")


def build(name: str, fuse) -> tuple[str, float]:
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMGRAD_CACHE_DIR": cache}
        r = subprocess.run([sys.executable, "-c", BUILD.format(here=here, name=name, fuse=fuse)],
                           env=env, capture_output=True, text=True, check=True)
    kind, t = r.stdout.split()
    return kind, float(t)


def main() -> None:
    import symgrad as sg

    rng = np.random.default_rng(0)
    print(f"small array losses, {N:,} samples, float64; value_and_grad, best of 7")
    for name, loss in losses().items():
        one(sg, name, loss, rng)
    print("float32 (float32 data; the fused float64 kernel on float64 data), best of 7")
    for name, loss in losses().items():
        float32(sg, name, loss, rng)
    name = "softmax regression, 4 features, 3 classes"
    for fuse in (None, False):
        kind, t = build(name, fuse)
        print(f"cold build, {name}, {kind}: {t:.2f} s (target < 3 s)")
        record("fused_arrays", f"cold build, softmax regression: {kind}", t, unit="s", target=3.0)


def one(sg, name: str, loss, rng) -> None:
    """Time one loss: the default (fused) kernel, on one thread, the array code (and the hand
    loops for the logistic loss), in alternating rounds."""
    d = data(name, rng)
    ff, f1 = sg.compile(loss), sg.compile(loss, parallel=False)
    fa = sg.compile(loss, fuse=False)
    assert type(ff).__name__ == "FusedKernel" and type(fa).__name__ == "ArrayKernel"
    x = ff.init(1) + 0.1 * rng.standard_normal(ff.n_params)
    va, ga = fa.value_and_grad(x, **d)
    vf, gf = ff.value_and_grad(x, **d)
    assert abs(vf - va) <= 1e-10 * abs(va) and np.allclose(gf, ga, rtol=1e-8, atol=1e-12)
    g = np.empty_like(x)
    fns = {"fused": lambda: ff.value_and_grad(x, g, **d),
           "fused 1 thread": lambda: f1.value_and_grad(x, g, **d),
           "array": lambda: fa.value_and_grad(x, g, **d)}
    if name.startswith("logistic"):
        plain, fast = hand(False), hand(True)
        for k in (plain, fast):
            assert abs(k(x, d["X"], d["y"], g) - va) <= 1e-12 * abs(va)
        fns |= {"hand": lambda: plain(x, d["X"], d["y"], g),
                "hand fastmath": lambda: fast(x, d["X"], d["y"], g)}
    t = race(fns)
    print(f"-- {name} ({ff.n_params} parameters)")
    for k, v in t.items():
        print(f"   {k:<16} {v * 1e3:8.2f} ms")
    print(f"   array code / fused (default): {t['array'] / t['fused']:.2f}x")
    record("fused_arrays", f"{name}, N=1e6: array code (fuse=False) / default (fused)",
           t["array"] / t["fused"], unit="x", target=1.0, better="higher")
    if "hand" in t:
        best = min(t["hand"], t["hand fastmath"])
        print(f"   fused on 1 thread / fastest hand loop: {t['fused 1 thread'] / best:.2f}x")
        record("fused_arrays", f"{name}, N=1e6: fused (1 thread) / fastest hand Numba loop",
               t["fused 1 thread"] / best, unit="x", target=1.3)


def float32(sg, name: str, loss, rng) -> None:
    """The fused float32 kernel against the float32 array code and the fused float64 kernel
    (default threads for all three), in alternating rounds."""
    d64 = data(name, rng)
    d32 = {k: v.astype(np.float32) for k, v in d64.items()}
    f32, f64 = sg.compile(loss, dtype="float32"), sg.compile(loss)
    fa = sg.compile(loss, dtype="float32", fuse=False)
    assert type(f32).__name__ == "FusedKernel" and type(fa).__name__ == "ArrayKernel"
    x = (f64.init(1) + 0.1 * rng.standard_normal(f64.n_params)).astype(np.float32)
    x64 = x.astype(np.float64)
    v32, g32 = f32.value_and_grad(x64, **d32)
    va, ga = fa.value_and_grad(x, **d32)
    assert abs(v32 - va) <= 1e-5 * abs(va) and np.allclose(g32, ga, rtol=1e-3, atol=1e-5)
    g, ga = np.empty_like(x64), np.empty_like(x)
    t = race({"fused float32": lambda: f32.value_and_grad(x64, g, **d32),
              "array float32": lambda: fa.value_and_grad(x, ga, **d32),
              "fused float64": lambda: f64.value_and_grad(x64, g, **d64)})
    print(f"-- {name}, float32")
    for k, v in t.items():
        print(f"   {k:<16} {v * 1e3:8.2f} ms")
    a, b = t["array float32"] / t["fused float32"], t["fused float32"] / t["fused float64"]
    name = name.split(",")[0]
    print(f"   float32 array code / fused float32 (default): {a:.2f}x")
    print(f"   fused float32 / fused float64: {b:.2f}x")
    record("fused_arrays", f"{name}, N=1e6, float32: array code (fuse=False) / default (fused)",
           a, unit="x", target=1.0, better="higher")
    record("fused_arrays", f"{name}, N=1e6: fused float32 / fused float64", b, unit="x",
           target=1.0)


if __name__ == "__main__":
    main()
