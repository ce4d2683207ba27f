"""A two-layer network (the textbook seed's model) trained with mini-batch SGD with momentum.

    logits = W2 @ relu(W1 @ x + b1) + b2,   loss = mean cross-entropy(softmax(logits), y)

on a synthetic 2-D, three-class data set (three concentric rings: not linearly separable, so the
hidden relu layer is needed). The loss is written once, on whole arrays (W1 is one (8, 2) array,
X one 2-vector per sample); symgrad derives the exact gradient with respect to all 51 weights
(one array per parameter; relu'(0) = 0, as PyTorch and dlgradient) and compiles it to matrix
products and fused loops over the samples of a mini-batch. The logits are compiled with the loss
(``outputs=``): the accuracy and the decision regions come from that model on the trained ``x``.

Figure: the decision regions on the test set and the loss per epoch.

Run:  python examples/two_layer_net.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import losses, metrics, optim

GENERATED = "two_layer_net.py"
HIDDEN = 8
CLASSES = 3

# Parameters and data columns (data names X and Y: "x" would clash with the parameter vector
# argument of f.value(x, ...)).
W1 = sg.params("W1", shape=(HIDDEN, 2))
b1 = sg.params("b1", shape=(HIDDEN,))
W2 = sg.params("W2", shape=(CLASSES, HIDDEN))
b2 = sg.params("b2", shape=(CLASSES,))
X = sg.data("X", shape=(2,))
Y = sg.data("Y", shape=(CLASSES,))

hidden = sg.relu(W1 @ X + b1)
logits = W2 @ hidden + b2
LOSS = losses.cross_entropy(logits, Y)
PARAMS = [W1, b1, W2, b2]  # the packing order of x (each array flattened row-major)


def rings(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on three noisy concentric rings (radius 1, 2, 3); the label is the ring."""
    label = rng.integers(0, CLASSES, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1.0 + label + 0.2 * rng.standard_normal(n)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]), label


def generate(directory: str | Path) -> Path:
    """Write the standalone generated module of this example's loss into ``directory``."""
    return sg.generate(LOSS, Path(directory) / GENERATED, PARAMS,
                       regenerate="python examples/regenerate.py")


def main(out_dir: str | Path, epochs: int = 30) -> dict:
    """Train, evaluate on a held-out test set, write the figure; return the key numbers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x_train, y_train = rings(900, rng)
    x_test, y_test = rings(600, rng)
    f = sg.compile(LOSS, PARAMS, outputs={"logits": logits})
    model = f.outputs["logits"]  # per-sample logits, packed like f's x
    assert f.params == ("W1", "b1", "W2", "b2")
    assert f.n_params == 2 * HIDDEN + HIDDEN + CLASSES * HIDDEN + CLASSES

    # He initialisation for the relu layer, small output weights, zero biases.
    x0 = f.pack(W1=rng.standard_normal((HIDDEN, 2)) * np.sqrt(2 / 2), b1=np.zeros(HIDDEN),
                W2=rng.standard_normal((CLASSES, HIDDEN)) * np.sqrt(1 / HIDDEN),
                b2=np.zeros(CLASSES))
    data = {"X": x_train, "Y": np.eye(CLASSES)[y_train]}
    res = sg.minimize(f, x0, optimizer=optim.momentum(lr=0.05, beta=0.9), data=data,
                      batch_size=32, epochs=epochs, seed=0)
    train_acc = metrics.accuracy(model(res.x, X=x_train), y_train)
    test_acc = metrics.accuracy(model(res.x, X=x_test), y_test)
    print(f"{f.n_params} parameters, {res.nit} mini-batch steps ({epochs} epochs of 32), "
          f"status {res.status}")
    print(f"cross-entropy: initial {f.value(x0, **data):.4f}, final {res.fun:.4f}")
    print(f"accuracy: train {train_acc:.3f}, test {test_acc:.3f}")

    from symgrad import plot

    fig = plot.figure(2, size=(6.0, 5.0))
    plot.decision_regions(lambda pts: metrics.predicted_class(model(res.x, X=pts)), x_test,
                          y_test, ax=fig.axes[0], class_names=["ring 1", "ring 2", "ring 3"],
                          title=f"Decision regions (test accuracy {test_acc:.1%})")
    plot.loss_curves({"epoch loss (train)": res.history.epoch_loss}, ax=fig.axes[1],
                     xlabel="epoch", ylabel="cross-entropy",
                     title="SGD with momentum (lr 0.05, beta 0.9), batch 32")
    fig_path = plot.save(fig, out / "two_layer_net.png")
    print(f"figure: {fig_path}")
    return {"train_accuracy": train_acc, "test_accuracy": test_acc, "fun": res.fun,
            "status": res.status, "n_params": f.n_params, "figures": [str(fig_path)],
            "x": res.x, "x_test": x_test}


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-")))
