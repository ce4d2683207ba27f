"""A 64-H-10 relu/softmax network on scikit-learn's bundled 8x8 digits, trained with Adam.

    logits = W2 @ relu(W1 @ x + b1) + b2,   loss = mean cross-entropy + 1e-4 * (|W1|² + |W2|²)

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 grey-level images of handwritten digits
inside scikit-learn (no download). Pixels (0..16) are scaled to [0, 1]; a seeded stratified split
keeps 25% of the images for testing. The loss is written once on whole arrays (W1 is one (H, 64)
array, X one 64-vector per sample); symgrad derives its exact gradient and compiles it to matrix
products, and ``sg.minimize`` runs mini-batch Adam over the training rows. The logits are
compiled with the loss (``outputs=``), so the accuracy is measured by the compiled model,
``model(x, X=...)``, on the trained ``x``.

Figure: the training loss per epoch and a few test digits with their predicted labels.

Run:  python examples/digits.py [OUT_DIR] [--epochs N] [--hidden H]
      (needs scikit-learn: pip install "symgrad[digits]")
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import losses, metrics, optim

CLASSES = 10
PIXELS = 64


def load(seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)``: scaled pixels and integer labels, split 75/25."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit('examples/digits.py needs scikit-learn for its bundled digits data: '
                 'pip install "symgrad[digits]" (or pip install scikit-learn)')
    digits = load_digits()
    x = digits.data / 16.0
    return tuple(train_test_split(x, digits.target, test_size=0.25, random_state=seed,
                                  stratify=digits.target))


def network(hidden: int):
    """The loss, its parameters in packing order, and the logits (the model)."""
    W1 = sg.params("W1", shape=(hidden, PIXELS))
    b1 = sg.params("b1", shape=(hidden,))
    W2 = sg.params("W2", shape=(CLASSES, hidden))
    b2 = sg.params("b2", shape=(CLASSES,))
    X = sg.data("X", shape=(PIXELS,))
    Y = sg.data("Y", shape=(CLASSES,))
    logits = W2 @ sg.relu(W1 @ X + b1) + b2
    loss = losses.cross_entropy(logits, Y) + losses.l2(W1, W2, weight=1e-4)
    return loss, [W1, b1, W2, b2], logits


def main(out_dir: str | Path, epochs: int = 60, hidden: int = 32) -> dict:
    """Train, evaluate on the held-out digits, write the figure; return the key numbers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = load()
    loss, params, logits = network(hidden)
    data = {"X": x_train, "Y": np.eye(CLASSES)[y_train]}
    t0 = time.perf_counter()
    f = sg.compile(loss, params, outputs={"logits": logits})
    model = f.outputs["logits"]  # per-sample logits, packed like f's x
    x0 = f.init(seed=0, scale=2.0)  # He initialisation for the relu layer, zero biases
    loss0 = f.value_and_grad(x0, **data)[0]  # the first call compiles (or loads) the Numba code
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = sg.minimize(f, x0, optimizer=optim.adam(lr=3e-3), data=data, batch_size=32,
                      epochs=epochs, seed=0)
    train_time = time.perf_counter() - t0
    test_scores = model(res.x, X=x_test)
    train_acc = metrics.accuracy(model(res.x, X=x_train), y_train)
    test_acc = metrics.accuracy(test_scores, y_test)
    confusion = metrics.confusion_matrix(test_scores, y_test)
    print(f"{len(x_train)} training and {len(x_test)} test images; network 64-{hidden}-10, "
          f"{f.n_params} parameters")
    print(f"build {build:.2f} s (SymPy, code generation, Numba); training {train_time:.2f} s "
          f"({res.nit} Adam steps, {epochs} epochs of batch 32), status {res.status}")
    print(f"loss: initial {loss0:.4f}, final {res.fun:.4f}")
    print(f"accuracy: train {train_acc:.3f}, test {test_acc:.3f} (model(x, X=...) on the "
          "compiled logits)")
    worst = np.unravel_index(np.argmax(confusion - np.diag(np.diag(confusion))), confusion.shape)
    print(f"most frequent confusion: {confusion[worst]} test images of {worst[0]} read as "
          f"{worst[1]}")
    fig_path = figure(out, res, metrics.predicted_class(test_scores), x_test, y_test, test_acc)
    print(f"figure: {fig_path}")
    return {"train_accuracy": train_acc, "test_accuracy": test_acc, "fun": res.fun,
            "status": res.status, "n_params": f.n_params, "build_seconds": build,
            "confusion": confusion, "test_scores": test_scores, "x": res.x,
            "train_seconds": train_time, "figures": [str(fig_path)]}


def figure(out: Path, res, predicted, x_test, y_test, test_acc: float) -> Path:
    """Loss per epoch (left) and the first 12 test digits with their predictions (right)."""
    from symgrad import plot

    fig = plot.figure(2, size=(5.0, 4.0))
    plot.loss_curves({"epoch loss (train)": res.history.epoch_loss}, ax=fig.axes[0],
                     xlabel="epoch", ylabel="cross-entropy + l2",
                     title="Adam (lr 3e-3), batch 32")
    grid = fig.axes[1].inset_axes([0, 0, 1, 1])
    fig.axes[1].set_axis_off()
    fig.axes[1].set_title(f"test digits: predicted (true); test accuracy {test_acc:.1%}")
    grid.set_axis_off()
    pred = predicted[:12]
    for k in range(12):
        ax = grid.inset_axes([(k % 4) / 4 + 0.01, 1 - (k // 4 + 1) / 3 + 0.05, 0.23, 0.25])
        ax.imshow(x_test[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ok = pred[k] == y_test[k]
        ax.set_xlabel(f"{pred[k]} ({y_test[k]})", color="black" if ok else "red", fontsize=9)
    return plot.save(fig, out / "digits.png")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", help="output folder (default: a new temporary one)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=32)
    a = ap.parse_args()
    main(Path(a.out_dir) if a.out_dir else Path(tempfile.mkdtemp(prefix="symgrad-example-")),
         epochs=a.epochs, hidden=a.hidden)
