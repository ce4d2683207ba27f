"""The dlfeval/dlgradient training loop of the MATLAB seed, in symgrad.

    y = (x2 - x1^2)^2 + (1 - x1)^2,  start (2, 2),  100 steps of plain gradient descent

MATLAB writes the loss as a function of the learnables and asks ``dlgradient`` for the
derivatives inside ``dlfeval``. symgrad takes the same Python function, differentiates it
exactly (SymPy) once, and compiles value + gradient to one Numba kernel; the loop then calls
``f.value_and_grad(x)`` where MATLAB calls ``dlfeval(@my_loss, x1, x2)``.

Three runs, as in the seed: learning rate 0.1, 0.2 (bounces around and does not converge), and
0.2 with time-based decay ``lr0 / (1 + 0.01*k)``. Figure: contours, the three paths and the
gradient field (the seed's quiver plot).

Run:  python examples/rosenbrock_learning_rate.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import optim, schedules

GENERATED = "rosenbrock.py"


def my_loss(x1, x2):
    """The seed's ``my_loss``: only the loss; symgrad derives the gradient."""
    return (x2 - x1**2) ** 2 + (1 - x1) ** 2


def update_model(x: np.ndarray, g: np.ndarray, learn_rate: float) -> np.ndarray:
    """The seed's ``updateModel``: one step against the gradient."""
    return x - learn_rate * g


def train(f: sg.Kernel, learn_rate, steps: int = 100, x0=(2.0, 2.0)):
    """The seed's loop; ``learn_rate`` is a number or a schedule ``k -> lr``.

    Returns the path (``steps + 1`` points) and the loss at each step.
    """
    x = np.array(x0, dtype=float)
    path, losses = [x.copy()], []
    for k in range(steps):
        lr = learn_rate(k) if callable(learn_rate) else learn_rate
        loss, g = f.value_and_grad(x)  # [loss, dydx1, dydx2] = dlfeval(@my_loss, x1, x2)
        x = update_model(x, g, lr)
        path.append(x.copy())
        losses.append(loss)
    return np.array(path), np.array(losses)


RUNS = {
    "lr = 0.1": 0.1,
    "lr = 0.2": 0.2,
    "lr = 0.2, time decay 0.01": schedules.time_decay(0.2, decay=0.01),
}


def generate(directory: str | Path) -> Path:
    """Write the standalone generated module of this example's loss into ``directory``."""
    return sg.generate(my_loss, Path(directory) / GENERATED,
                       regenerate="python examples/regenerate.py")


def main(out_dir: str | Path) -> dict:
    """Run the three learning rates; write the figure; return the key numbers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = sg.compile(my_loss)
    print(f"loss: {f.expr}   parameters: {f.params}")
    print(f"at (2, 2): loss and gradient = {f.value_and_grad([2.0, 2.0])}")

    results: dict = {}
    paths = {}
    for label, lr in RUNS.items():
        path, _ = train(f, lr)
        # The same run through sg.minimize (the library's loop) gives the same iterates.
        res = sg.minimize(f, [2.0, 2.0], optimizer=optim.sgd(lr=lr), steps=100, record_x=True)
        assert np.allclose(res.history.x, path, rtol=0, atol=1e-12), label
        x = path[-1]
        results[label] = {"x": (float(x[0]), float(x[1])), "fun": f.value(x),
                          "dist": float(np.hypot(x[0] - 1, x[1] - 1))}
        paths[label] = path
        print(f"{label:<28} x = ({x[0]:.4f}, {x[1]:.4f})   loss = {f.value(x):.3e}   "
              f"|x - (1,1)| = {results[label]['dist']:.3e}")

    from symgrad import plot

    fig = plot.figure(2, size=(7.0, 5.5))
    plot.contour(f, (-2.0, 2.5), (-0.5, 3.2), trajectories=paths, minimum=(1, 1),
                 legend="lower right",
                 title="(x2 - x1²)² + (1 - x1)²: 100 steps from (2, 2)", ax=fig.axes[0])
    sched = RUNS["lr = 0.2, time decay 0.01"]
    lr_ax = fig.axes[1]
    k = np.arange(100)
    for i, (label, lr) in enumerate(RUNS.items()):
        lr_ax.plot(k, [lr(j) if callable(lr) else lr for j in k], color=plot.COLORS[i],
                   lw=2, label=label)
    lr_ax.set_xlabel("iteration k")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_title(f"Learning rates (time decay: {sched.lr0}/(1 + {sched.decay}·k))")
    lr_ax.grid(True, alpha=0.3)
    lr_ax.legend()
    fig_path = plot.save(fig, out / "rosenbrock_learning_rate.png")
    print(f"figure: {fig_path}")
    results["figures"] = [str(fig_path)]
    return results


def _out_dir(argv: list[str]) -> Path:
    return Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-"))


if __name__ == "__main__":
    main(_out_dir(sys.argv[1:]))
