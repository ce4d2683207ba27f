"""Momentum rolls through a shallow local minimum where plain gradient descent stops.

    loss(w) = w**4 - 3*w**2 + w        local minimum w ~ 1.131 (loss -1.07),
                                       global minimum w ~ -1.301 (loss -3.51)

From w = 2 with learning rate 0.01, plain SGD settles in the nearest (local) minimum. Heavy-ball
momentum (``v <- beta*v - lr*g; w <- w + v``, beta = 0.9) is the textbook seed's "ball rolling
down the loss curve": the speed gathered on the way down carries it over the bump at w ~ 0.17
into the global minimum.

Run:  python examples/momentum_escape.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import optim

GENERATED = "momentum_escape.py"
w = sg.params("w")
LOSS = w**4 - 3 * w**2 + w
W0, LR, BETA, STEPS = 2.0, 0.01, 0.9, 200


def generate(directory: str | Path) -> Path:
    """Write the standalone generated module of this example's loss into ``directory``."""
    return sg.generate(LOSS, Path(directory) / GENERATED, [w],
                       regenerate="python examples/regenerate.py")


def main(out_dir: str | Path) -> dict:
    """Run SGD and momentum from the same start; write the figure; return the key numbers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = sg.compile(LOSS)
    runs = {
        f"SGD (lr {LR})": sg.minimize(f, [W0], optimizer=optim.sgd(lr=LR), steps=STEPS,
                                      record_x=True),
        f"momentum (lr {LR}, beta {BETA})": sg.minimize(
            f, [W0], optimizer=optim.momentum(lr=LR, beta=BETA), steps=STEPS, record_x=True),
    }
    sgd_res, mom_res = runs.values()
    # The two minima, exactly: roots of loss'(w) = 4w^3 - 6w + 1 with loss'' > 0.
    minima = sorted(float(r) for r in np.roots([4, 0, -6, 1]).real if 12 * r * r - 6 > 0)
    print(f"loss {f.expr}: minima at w = {minima[0]:.4f} (global, loss "
          f"{f.value([minima[0]]):.4f}) and w = {minima[1]:.4f} (local, loss "
          f"{f.value([minima[1]]):.4f})")
    for label, r in runs.items():
        print(f"{label:<28} ends at w = {r.x[0]: .4f}, loss {r.fun: .4f}")

    from symgrad import plot

    fig = plot.figure(2, size=(6.0, 4.5))
    plot.path_1d(f, (-2.0, 2.2), runs, ax=fig.axes[0],
                 title=f"{STEPS} steps from w = {W0}: where each optimizer stops")
    fig.axes[0].set_ylim(-4.5, 8)
    plot.loss_curves(runs, ax=fig.axes[1], log=False, title="Loss per step")
    fig_path = plot.save(fig, out / "momentum_escape.png")
    print(f"figure: {fig_path}")
    return {"sgd_w": float(sgd_res.x[0]), "momentum_w": float(mom_res.x[0]),
            "sgd_fun": sgd_res.fun, "momentum_fun": mom_res.fun,
            "local_min": minima[1], "global_min": minima[0], "figures": [str(fig_path)]}


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-")))
