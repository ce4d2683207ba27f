"""Predictions of a 784-128-10 relu network on 10,000 samples: the compiled model against
NumPy's forward pass, both on one BLAS thread (issue 23: target within 1.3x).

    python benchmarks/model_predict.py [--samples 10000] [--repeat 7]

Prints the best-of-``repeat`` time of ``model(x, X=...)`` (validation and the non-finite check
of the outputs included) and of ``relu(X @ W1.T + b1) @ W2.T + b2`` in NumPy, their ratio, the
largest difference of the logits, and the time of ``batch_size=1000`` chunks. Also the Jacobian
of the fitted curve ``a*exp(-b*t) + c`` (3 parameters, 10^6 samples) against NumPy's analytic
one, and the classifier's saliency ``jacobian(x, wrt="X")`` (its 10 probabilities by each
sample's 784 inputs, 1,000 samples) against NumPy's analytic one and against one ``jvp_X``
sweep per input entry (what ``wrt="X"`` ran before it took one reverse sweep per output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import best, record

import symgrad as sg


def network(samples: int, repeat: int) -> None:
    W1, b1 = sg.params("W1", shape=(128, 784)), sg.params("b1", shape=(128,))
    W2, b2 = sg.params("W2", shape=(10, 128)), sg.params("b2", shape=(10,))
    X = sg.data("X", shape=(784,))
    model = sg.compile(W2 @ sg.relu(W1 @ X + b1) + b2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(model.n_params) * 0.05
    Xd = rng.standard_normal((samples, 784))
    p = model.unpack(x)

    def numpy_forward():
        return np.maximum(Xd @ p["W1"].T + p["b1"], 0.0) @ p["W2"].T + p["b2"]

    model(x, X=Xd[:10])  # compile (or load) the Numba code
    with threadpool_limits(1):
        diff = float(np.max(np.abs(model(x, X=Xd) - numpy_forward())))
        t_np, t_sg, t_chunks = [], [], []
        for _ in range(3):  # interleaved rounds: a busy neighbour hits both sides alike
            t_np.append(best(numpy_forward, repeat))
            t_sg.append(best(lambda: model(x, X=Xd), repeat))
            t_chunks.append(best(lambda: model(x, X=Xd, batch_size=1000), repeat))
    t_np, t_sg, t_chunks = min(t_np), min(t_sg), min(t_chunks)
    ratio = t_sg / t_np
    print(f"784-128-10 logits, {samples:,} samples, one BLAS thread (best of {repeat} x 3):")
    print(f"  NumPy forward          {t_np * 1e3:8.2f} ms")
    print(f"  model(x, X=...)        {t_sg * 1e3:8.2f} ms   ratio {ratio:.2f}x (target <= 1.3x)")
    print(f"  batch_size=1000        {t_chunks * 1e3:8.2f} ms   ratio {t_chunks / t_np:.2f}x")
    print(f"  max |logits - NumPy|   {diff:.2e}")
    record("model_predict", f"model(x, X) / NumPy forward, 784-128-10, {samples:,} samples, "
           "1 BLAS thread", ratio, unit="x", target=1.3)


def curve(samples: int, repeat: int) -> None:
    a, b, c = sg.params("a b c")
    t = sg.data("t")
    model = sg.compile(a * sg.exp(-b * t) + c)
    tt = np.linspace(0.0, 10.0, samples)
    x = np.array([4.0, 0.45, 0.6])
    model.jacobian(x, t=tt[:10])

    def analytic():
        e = np.exp(-x[1] * tt)
        return np.column_stack([e, -x[0] * tt * e, np.ones_like(tt)])

    err = float(np.max(np.abs(model.jacobian(x, t=tt) - analytic())))
    t_np = best(analytic, repeat)
    t_sg = best(lambda: model.jacobian(x, t=tt), repeat)
    print(f"a*exp(-b*t) + c, {samples:,} samples: jacobian {t_sg * 1e3:.2f} ms, NumPy analytic "
          f"{t_np * 1e3:.2f} ms (ratio {t_sg / t_np:.2f}x; the 3 tangents in one pass), max diff "
          f"{err:.1e}")
    record("model_predict", f"model.jacobian / NumPy analytic, a*exp(-b*t)+c, {samples:,} "
           "samples", t_sg / t_np, unit="x", target=None)


def saliency(samples: int, repeat: int) -> None:
    W1, b1 = sg.params("W1", shape=(128, 784)), sg.params("b1", shape=(128,))
    W2, b2 = sg.params("W2", shape=(10, 128)), sg.params("b2", shape=(10,))
    X = sg.data("X", shape=(784,))
    model = sg.compile(sg.softmax(W2 @ sg.relu(W1 @ X + b1) + b2))
    rng = np.random.default_rng(1)
    x = rng.standard_normal(model.n_params) * 0.05
    Xd = rng.standard_normal((samples, 784))
    p = model.unpack(x)

    def analytic():  # d softmax(z2) / d X = (diag(q) - q q') W2 diag(relu'(z1)) W1, per sample
        z1 = Xd @ p["W1"].T + p["b1"]
        z2 = np.maximum(z1, 0.0) @ p["W2"].T + p["b2"]
        q = np.exp(z2 - z2.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        a = ((p["W2"][None] * (z1 > 0)[:, None, :]).reshape(-1, 128) @ p["W1"])
        s = q[:, :, None] * (np.eye(10)[None] - q[:, None, :])
        return s @ a.reshape(samples, 10, 784)

    def stacked():  # one forward sweep per input entry
        out, col = np.empty((samples, 10, 784)), np.empty((samples, 10))
        v = np.zeros((samples, 784))
        for k in range(784):
            v[:, k] = 1.0
            model.jit.jvp_X(x, v, col, model.dims, Xd)
            out[:, :, k] = col
            v[:, k] = 0.0
        return out

    model.jacobian(x, wrt="X", X=Xd[:10])
    model.jit.jvp_X(x, np.zeros((10, 784)), np.empty((10, 10)), model.dims, Xd[:10])
    with threadpool_limits(1):
        ref = analytic()
        err = float(np.max(np.abs(model.jacobian(x, wrt="X", X=Xd) - ref)))
        err_stacked = float(np.max(np.abs(stacked() - ref)))
        t_np = best(analytic, repeat)
        t_sg = best(lambda: model.jacobian(x, wrt="X", X=Xd), repeat)
        t_st = best(stacked, max(1, repeat // 3))
    print(f"saliency of a 784-128-10 classifier, {samples:,} samples, one BLAS thread: "
          f"jacobian(wrt='X') {t_sg * 1e3:.1f} ms, NumPy analytic {t_np * 1e3:.1f} ms "
          f"({t_sg / t_np:.2f}x), 784 jvp_X sweeps {t_st * 1e3:.0f} ms ({t_sg / t_st:.3f}x); "
          f"max diff {err:.1e} (stacked {err_stacked:.1e})")
    record("model_predict", f"model.jacobian(wrt='X') / NumPy analytic saliency, 784-128-10 "
           f"softmax, {samples:,} samples, 1 BLAS thread", t_sg / t_np, unit="x", target=None)
    record("model_predict", f"model.jacobian(wrt='X') / 784 stacked jvp_X sweeps, {samples:,} "
           "samples", t_sg / t_st, unit="x", target=0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    network(a.samples, a.repeat)
    curve(1_000_000, a.repeat)
    saliency(1_000, a.repeat)


if __name__ == "__main__":
    main()
