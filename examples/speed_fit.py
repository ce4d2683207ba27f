"""The seeds' noisy speed data, fitted by Levenberg–Marquardt next to 3,000 steps of SGD.

    time = 0..19,  speed = noise + 0.5*(time - 9.5)**2 + 1     (examples/quadratic_fit.py)
    residual  a*time**2 + b*time + c - speed

The textbook loop (quadratic_fit.py) takes gradient steps with lr = 1e-5: after 3,000 steps
the loss is still far from its minimum, because the problem is badly scaled (time**2 reaches
361). Least squares sees the same residuals, knows their exact Jacobian and lands on the
minimum in a handful of LM iterations, with standard errors.

Run:  python examples/speed_fit.py [OUT_DIR]
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import optim

HERE = Path(__file__).resolve().parent
SGD_STEPS = 3000
LR = 1e-5


def _quadratic_fit():
    name = "symgrad_example_quadratic_fit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "quadratic_fit.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def main(out_dir: str | Path, sgd_steps: int = SGD_STEPS) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qf = _quadratic_fit()
    a, b, c = qf.PARAMS
    time, speed = qf.speed_data()
    data = {"time": time, "speed": speed}
    start = np.random.default_rng(1).standard_normal(3)  # the seed example's initial guess

    f = sg.compile(qf.LOSS, qf.PARAMS)
    sgd = sg.minimize(f, start, optimizer=optim.sgd(lr=LR), steps=sgd_steps, data=data)

    resid = sg.lsq.as_kernel(a * qf.time_**2 + b * qf.time_ + c - qf.speed_, qf.PARAMS)
    recorder = Recorder(resid)
    fit = sg.least_squares(recorder, start, data=data)
    n = time.size
    lm_losses = [recorder.costs[0] * 2 / n]  # the loss after each accepted LM step
    for cst in recorder.costs[1:]:
        lm_losses.append(min(lm_losses[-1], cst * 2 / n))
    exact = np.polyfit(time, speed, 2)
    mse = float(2 * fit.cost / time.size)
    print(fit.summary())
    print(f"LM: {fit.nit} iterations, {fit.nfev} evaluations, loss {mse:.6f} "
          f"(polyfit agrees to {np.max(np.abs(fit.x - exact) / np.abs(exact)):.1e})")
    print(f"SGD: {sgd_steps} steps, loss {sgd.fun:.6f}")

    from symgrad import plot

    fig = plot.figure(2, size=(6.0, 4.5))
    pred = {"LM": fit.x, f"SGD, {sgd_steps} steps": sgd.x, "start": start}
    plot.predictions(time, speed, {k: v[0] * time**2 + v[1] * time + v[2]
                                   for k, v in pred.items()},
                     xlabel="time", ylabel="speed", ax=fig.axes[0],
                     title="a·t² + b·t + c: least squares vs SGD")
    fig.axes[0].set_ylim(-5, 80)
    plot.loss_curves({f"SGD, lr = {LR:g}": sgd.history.loss,
                      "Levenberg–Marquardt": np.array(lm_losses)}, ax=fig.axes[1],
                     title="Mean squared error per iteration")
    fig.axes[1].set_xscale("symlog", linthresh=1)
    fig.axes[1].set_xlim(0, sgd_steps)
    fig_path = plot.save(fig, out / "speed_fit.png")
    print(f"figure: {fig_path}")
    return {"x": fit.x, "stderr": fit.stderr, "lm_nit": fit.nit, "lm_nfev": fit.nfev,
            "lm_loss": mse, "sgd_loss": float(sgd.fun), "sgd_x": sgd.x, "polyfit": exact,
            "lm_losses": np.array(lm_losses), "figures": [str(fig_path)]}


class Recorder:
    """A residual kernel that records the cost of every point the solver evaluates."""

    def __init__(self, kernel) -> None:
        self.kernel, self.costs = kernel, []

    def __getattr__(self, name: str):
        return getattr(self.kernel, name)

    def bind(self, **data):
        bound, costs = self.kernel.bind(**data), self.costs

        class Bound:
            def __getattr__(self, name: str):
                return getattr(bound, name)

            def normal(self, x, jscale=None, rscale=None):
                out = bound.normal(x, jscale, rscale)
                costs.append(0.5 * float(out[2]))
                return out

        return Bound()


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-")))
