"""Logistic regression with hundreds of features, written on whole arrays and trained with Adam.

    loss = mean binary-cross-entropy(X @ w + b, y) + 1e-3 * |w|²

on a seeded synthetic problem: N = 5,000 samples with P = 500 Gaussian features, labels drawn
from a logistic model whose true weights are sparse (20 nonzero). ``w`` is one array parameter
of shape (P,) and ``X`` one P-vector per sample, so the generated code is the same for any P (one
matrix-vector product forward, one backward) and the build time does not grow with P.

Figure: the training loss per step and the learned weights against the true ones.

Run:  python examples/logistic_regression.py [OUT_DIR] [--features P] [--samples N] [--steps S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import losses, optim

L2 = 1e-3


def synthetic(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(X, y, w_true, b_true)``: standard normal features, labels from a sparse logistic model."""
    rng = np.random.default_rng(seed)
    w_true = np.zeros(p)
    k = min(20, p)
    w_true[rng.choice(p, k, replace=False)] = rng.normal(0.0, 2.0, k)
    b_true = 0.5
    X = rng.standard_normal((n, p))
    prob = 1.0 / (1.0 + np.exp(-(X @ w_true + b_true)))
    y = (rng.random(n) < prob).astype(np.float64)
    return X, y, w_true, b_true


def model(p: int):
    """The penalised logistic loss and its parameters ``[w, b]``."""
    w = sg.params("w", shape=(p,))
    b = sg.params("b")
    X = sg.data("X", shape=(p,))
    y = sg.data("y")
    return losses.binary_cross_entropy(X @ w + b, y) + losses.l2(w, weight=L2), [w, b]


def main(out_dir: str | Path, features: int = 500, samples: int = 5000, steps: int = 300) -> dict:
    """Fit, report accuracy on the training set and on fresh samples, write the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y, w_true, b_true = synthetic(2 * samples, features)
    (x_train, x_test), (y_train, y_test) = np.split(X, 2), np.split(y, 2)
    loss, params = model(features)
    t0 = time.perf_counter()
    f = sg.compile(loss, params)
    x0 = np.zeros(f.n_params)
    loss0 = f.value_and_grad(x0, X=x_train, y=y_train)[0]  # the first call compiles the code
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = sg.minimize(f, x0, optimizer=optim.adam(lr=0.02), steps=steps,
                      data={"X": x_train, "y": y_train}, record_every=1)
    fit = time.perf_counter() - t0
    fitted = f.unpack(res.x)

    def accuracy(x, labels):
        return float(np.mean(((x @ fitted["w"] + fitted["b"]) > 0) == (labels > 0.5)))

    train_acc, test_acc = accuracy(x_train, y_train), accuracy(x_test, y_test)
    bayes = float(np.mean(((x_test @ w_true + b_true) > 0) == (y_test > 0.5)))
    print(f"{samples} samples, {features} features: {f.n_params} parameters")
    print(f"build {build:.2f} s (SymPy, code generation, Numba); fit {fit:.2f} s "
          f"({res.nit} full-batch Adam steps), status {res.status}")
    print(f"loss: initial {loss0:.4f}, final {res.fun:.4f}")
    print(f"accuracy: train {train_acc:.3f}, test {test_acc:.3f} "
          f"(the true model scores {bayes:.3f} on the test set)")
    fig_path = figure(out, res, fitted["w"], w_true)
    print(f"figure: {fig_path}")
    return {"train_accuracy": train_acc, "test_accuracy": test_acc, "true_accuracy": bayes,
            "fun": res.fun, "status": res.status, "n_params": f.n_params,
            "build_seconds": build, "fit_seconds": fit, "figures": [str(fig_path)]}


def figure(out: Path, res, w: np.ndarray, w_true: np.ndarray) -> Path:
    """Loss per step (left) and fitted against true weights (right)."""
    from symgrad import plot

    fig = plot.figure(2, size=(5.0, 4.0))
    plot.loss_curves({"training loss": res}, ax=fig.axes[0], xlabel="step",
                     ylabel="binary cross-entropy + l2", title="Adam (lr 0.02), full batch")
    ax = fig.axes[1]
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.scatter(w_true, w, s=8, alpha=0.6)
    lim = 1.1 * max(np.abs(w_true).max(), np.abs(w).max())
    ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, ls="--")
    ax.set(xlabel="true weight", ylabel="fitted weight", title=f"{w.size} weights")
    return plot.save(fig, out / "logistic_regression.png")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", help="output folder (default: a new temporary one)")
    ap.add_argument("--features", type=int, default=500)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    main(Path(a.out_dir) if a.out_dir else Path(tempfile.mkdtemp(prefix="symgrad-example-")),
         features=a.features, samples=a.samples, steps=a.steps)
