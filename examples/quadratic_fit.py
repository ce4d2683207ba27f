"""The seven steps of the textbook seed: fit a quadratic to noisy speed measurements.

    time = 0..19,  speed = noise + 0.5*(time - 9.5)**2 + 1     (seeded noise)
    model  a*time**2 + b*time + c,   loss = mean((model - speed)**2),   lr = 1e-5

1. initialise the parameters (random, seeded)   2. predict   3. loss   4. gradient
5. step (``params -= lr * grad``)   6. repeat   7. stop (here: when the loss improves by less
than 0.1 % in a step, or after 100 steps).

The seed uses PyTorch's ``loss.backward()``; here the exact gradient comes from the symbolic
derivative, compiled once. The example also writes the standalone module
``generated/quadratic_fit.py`` (needs only NumPy and Numba; commit it, diff it).

Run:  python examples/quadratic_fit.py [OUT_DIR]   (also refreshes generated/quadratic_fit.py)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import optim

GENERATED = "quadratic_fit.py"
REPO_GENERATED = Path(__file__).resolve().parent.parent / "generated"
LR = 1e-5
MAX_STEPS = 100
TOL = 1e-4  # step 7: stop when the relative improvement of the loss is below this

a, b, c = sg.params("a b c")
time_, speed_ = sg.data("time speed")
LOSS = sg.mean((a * time_**2 + b * time_ + c - speed_) ** 2)
PARAMS = [a, b, c]  # the order of the parameter vector, stated explicitly


def speed_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seed's data: 20 time steps, a parabola plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(20, dtype=float)
    speed = rng.standard_normal(20) + 0.5 * (time - 9.5) ** 2 + 1
    return time, speed


def predict(t: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Step 2: the model's predictions ``a*t**2 + b*t + c``."""
    pa, pb, pc = params
    return pa * t**2 + pb * t + pc


def generate(directory: str | Path) -> Path:
    """Write the standalone generated module of this example's loss into ``directory``."""
    return sg.generate(LOSS, Path(directory) / GENERATED, PARAMS,
                       regenerate="python examples/regenerate.py")


def main(out_dir: str | Path, generated_dir: str | Path | None = None) -> dict:
    """Run the seven steps; write the figure and the generated module; return key numbers.

    The module goes to ``generated_dir`` (default: ``out_dir``; the script passes the
    repository's ``generated/``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    time, speed = speed_data()
    f = sg.compile(LOSS, PARAMS)
    data = {"time": time, "speed": speed}

    # Step 1: initialise the parameters with random values.
    params = np.random.default_rng(1).standard_normal(3)
    start = params.copy()
    snapshots = {0: params.copy()}
    losses = []
    for step in range(MAX_STEPS):                   # Step 6: repeat
        preds = predict(time, params)               # Step 2: predictions (for the figure)
        loss, grad = f.value_and_grad(params, **data)  # Steps 3 and 4: loss and its gradient
        assert np.isclose(loss, np.mean((preds - speed) ** 2))
        losses.append(loss)
        if step < 10 or step % 10 == 0:
            print(f"step {step:3d}  loss {loss:12.4f}   grad {np.array2string(grad, precision=2)}")
        if step > 0 and losses[-2] - loss < TOL * losses[-2]:  # Step 7: stop
            print(f"Step 7, stop: the loss improved by less than {TOL:.2%} at step {step}")
            break
        params = params - LR * grad                 # Step 5: step the weights
        if step + 1 in (1, 2, 5):
            snapshots[step + 1] = params.copy()
    steps = len(losses) - 1
    snapshots[steps] = params.copy()

    # The same loop as one call: identical iterates.
    res = sg.minimize(f, start, optimizer=optim.sgd(lr=LR), steps=steps, data=data)
    assert np.allclose(res.x, params, rtol=0, atol=1e-12)
    chk = sg.check_grad(f, params, data=data)
    print(chk.summary())

    gen_path = generate(generated_dir if generated_dir is not None else out)
    print(f"generated module: {gen_path}")

    from symgrad import plot

    fig = plot.figure(2, size=(6.0, 4.5))
    plot.predictions(time, speed, {f"step {k}": predict(time, p) for k, p in snapshots.items()},
                     xlabel="time", ylabel="speed", ax=fig.axes[0],
                     title="Predictions a·t² + b·t + c while training")
    fig.axes[0].set_ylim(-5, 80)
    plot.loss_curves({f"SGD, lr = {LR:g}": np.array(losses)}, ax=fig.axes[1],
                     title="Mean squared error")
    fig_path = plot.save(fig, out / "quadratic_fit.png")
    print(f"figure: {fig_path}")
    print(f"final parameters a, b, c = {np.array2string(params, precision=4)}, "
          f"loss {losses[-1]:.4f} after {steps} steps")
    return {"params": params, "initial_loss": losses[0], "final_loss": losses[-1],
            "losses": np.array(losses), "steps": steps, "check_ok": chk.ok,
            "generated": str(gen_path), "figures": [str(fig_path)]}


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-")),
         generated_dir=REPO_GENERATED)
