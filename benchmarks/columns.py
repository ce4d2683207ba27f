"""Derivative matrices of array code, column by column: a model's Jacobian, a loss's Hessian.

    python benchmarks/columns.py [--samples 20000] [--repeat 5]

Both compute the work that does not depend on the direction once (the forward values, the
loss's reverse sweep, the tangents' coefficients such as ``1 - tanh(z)**2``), then one cheap
linear pass per column (``symgrad/backend/numba/columns.py``). Figures, one BLAS thread:

- ``model.jacobian`` of a tanh layer ``tanh(W @ X + b)`` (16 inputs, 8 outputs, P = 136)
  against the fastest NumPy analytic Jacobian we could write (``s = 1 - tanh(z)**2`` once, then
  the dense and bias blocks filled by broadcasting: it knows that a weight moves one output,
  which the generated dense tangents do not), and against stacking P ``model.jvp(x, e_j)``
  (what the Jacobian did inside Numba before: one whole forward sweep per column);
- ``f.hessian`` of a 16-8-3 tanh MLP's mean squared error (P = 163) against stacking its P
  Hessian-vector products ``f.hvp(x, e_j)`` (what the Hessian did inside Numba before: one
  whole HVP per column), and the two compared to 1e-10.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import best, record

import symgrad as sg


def jacobian(samples: int, repeat: int) -> None:
    H, D = 8, 16
    W, b = sg.params("W", shape=(H, D)), sg.params("b", shape=(H,))
    X = sg.data("X", shape=(D,))
    model = sg.compile(sg.tanh(W @ X + b))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(model.n_params) * 0.3
    Xd = rng.standard_normal((samples, D))
    p = model.unpack(x)
    idx = np.arange(H)

    def analytic():
        s = 1.0 - np.tanh(Xd @ p["W"].T + p["b"]) ** 2
        J = np.zeros((samples, H, H * D + H))
        J[:, :, :H * D].reshape(samples, H, H, D)[:, idx, idx, :] = s[:, :, None] * Xd[:, None, :]
        J[:, idx, H * D + idx] = s
        return J

    eye = np.eye(model.n_params)

    def stacked():
        return np.stack([model.jvp(x, e, X=Xd) for e in eye], axis=-1)

    model.jacobian(x, X=Xd[:10])  # compile (or load)
    model.jvp(x, eye[0], X=Xd[:10])
    with threadpool_limits(1):
        err = float(np.max(np.abs(model.jacobian(x, X=Xd) - analytic())))
        t_np, t_sg, t_v = [], [], []
        for _ in range(3):  # interleaved rounds: a busy neighbour hits both sides alike
            t_np.append(best(analytic, repeat))
            t_sg.append(best(lambda: model.jacobian(x, X=Xd), repeat))
            t_v.append(best(stacked, max(1, repeat // 2)))
    t_np, t_sg, t_v = min(t_np), min(t_sg), min(t_v)
    print(f"tanh layer 16 -> 8, P = {model.n_params}, {samples:,} samples, one BLAS thread: "
          f"jacobian {t_sg * 1e3:.2f} ms, NumPy analytic {t_np * 1e3:.2f} ms "
          f"(ratio {t_sg / t_np:.2f}x), {model.n_params} jvp calls {t_v * 1e3:.1f} ms "
          f"(ratio {t_sg / t_v:.3f}x), max diff {err:.1e}")
    what = f"tanh layer 16 -> 8 (P = {model.n_params}), {samples:,} samples, 1 BLAS thread"
    # NumPy's analytic J uses the sparsity of a dense layer's J (a weight moves one output);
    # the generated columns are dense tangents: informational, no target
    record("columns", f"model.jacobian / NumPy analytic Jacobian, {what}", t_sg / t_np,
           unit="x")
    record("columns", f"model.jacobian / {model.n_params} stacked model.jvp calls, {what}",
           t_sg / t_v, unit="x", target=0.5)


def hessian(samples: int, repeat: int) -> None:
    W1, b1 = sg.params("W1", shape=(8, 16)), sg.params("b1", shape=(8,))
    W2, b2 = sg.params("W2", shape=(3, 8)), sg.params("b2", shape=(3,))
    X, Y = sg.data("X", shape=(16,)), sg.data("Y", shape=(3,))
    out = W2 @ sg.tanh(W1 @ X + b1) + b2
    f = sg.compile(sg.mean(sg.sum((out - Y) ** 2, axis=0)), [W1, b1, W2, b2], fuse=False)
    rng = np.random.default_rng(1)
    data = {"X": rng.standard_normal((samples, 16)), "Y": rng.standard_normal((samples, 3))}
    x = rng.standard_normal(f.n_params) * 0.3
    eye = np.eye(f.n_params)

    def stacked():
        return np.column_stack([f.hvp(x, e, **data) for e in eye])

    f.hessian(x, **data)  # compile (or load)
    f.hvp(x, eye[0], **data)
    with threadpool_limits(1):
        H = f.hessian(x, **data)
        err = float(np.max(np.abs(H - stacked())) / np.max(np.abs(H)))
        t_h, t_v = [], []
        for _ in range(3):
            t_h.append(best(lambda: f.hessian(x, **data), repeat))
            t_v.append(best(stacked, max(1, repeat // 2)))
    t_h, t_v = min(t_h), min(t_v)
    print(f"16-8-3 tanh MLP loss, P = {f.n_params}, {samples:,} samples, one BLAS thread: "
          f"hessian {t_h * 1e3:.1f} ms, {f.n_params} hvp calls {t_v * 1e3:.1f} ms "
          f"(ratio {t_h / t_v:.3f}x), max relative difference {err:.1e}")
    record("columns", f"f.hessian / {f.n_params} stacked f.hvp calls, 16-8-3 tanh MLP loss, "
           f"{samples:,} samples, 1 BLAS thread", t_h / t_v, unit="x", target=0.5)
    record("columns", "f.hessian against stacked HVPs: max relative difference", err,
           target=1e-10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    jacobian(a.samples, a.repeat)
    hessian(a.samples, a.repeat)


if __name__ == "__main__":
    main()
