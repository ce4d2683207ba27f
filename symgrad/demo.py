"""``symgrad demo``: the seed scenarios end to end, with their numbers and figures.

1. Rosenbrock-like ``(x2 - x1^2)^2 + (1 - x1)^2`` from (2, 2), 100 steps of SGD: lr 0.1, lr 0.2,
   lr 0.2 with time decay 0.01 (the MATLAB dlfeval seed); contour + paths + gradient quiver.
2. The seven-step quadratic fit to noisy speed data, lr 1e-5 (the textbook seed).
3. The backprop graph ``|y_true - (w*x + b)|`` at x=2, w=3, b=1, y_true=4: gradients (2, 1).
4. Momentum rolling through a shallow local minimum where SGD stops.
5. A two-layer relu/softmax network, mini-batch SGD with momentum, three rings: accuracy > 95%.

Every loss is differentiated exactly and compiled once; the kernels are cached on disk, so a
second run starts in a few seconds. The longer, commented versions are in ``examples/``.

>>> from symgrad.demo import SCENARIOS
>>> [name for name, _ in SCENARIOS]
['rosenbrock', 'quadratic_fit', 'backprop', 'momentum', 'two_layer_net']
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["SCENARIOS", "run"]


def rosenbrock(out: Path) -> dict:
    """The dlfeval loop: three learning-rate settings from (2, 2)."""
    import symgrad as sg
    from symgrad import optim, plot, schedules

    def my_loss(x1, x2):
        return (x2 - x1**2) ** 2 + (1 - x1) ** 2

    f = sg.compile(my_loss)
    runs = {"lr = 0.1": 0.1, "lr = 0.2": 0.2,
            "lr = 0.2, time decay 0.01": schedules.time_decay(0.2, decay=0.01)}
    res = {k: sg.minimize(f, [2.0, 2.0], optimizer=optim.sgd(lr=lr), steps=100)
           for k, lr in runs.items()}
    fig = plot.contour(f, (-2.0, 2.5), (-0.5, 3.2), trajectories=res, minimum=(1, 1),
                       legend="lower right",
                       title="(x2 - x1²)² + (1 - x1)²: 100 SGD steps from (2, 2)")
    path = plot.save(fig, out / "rosenbrock_learning_rate.png")
    lines = [f"{k:<26} x = ({r.x[0]:.4f}, {r.x[1]:.4f})  loss {r.fun:.3e}"
             for k, r in res.items()]
    return {"lines": lines, "figures": [path],
            "numbers": {k: {"x": r.x.tolist(), "fun": r.fun} for k, r in res.items()}}


def quadratic_fit(out: Path) -> dict:
    """Initialise, predict, loss, gradient, step, repeat, stop."""
    import symgrad as sg
    from symgrad import plot

    a, b, c = sg.params("a b c")
    t, y = sg.data("time speed")
    loss = sg.mean((a * t**2 + b * t + c - y) ** 2)
    rng = np.random.default_rng(0)
    time_ = np.arange(20, dtype=float)
    speed = rng.standard_normal(20) + 0.5 * (time_ - 9.5) ** 2 + 1
    f = sg.compile(loss, [a, b, c]).bind(time=time_, speed=speed)
    p = np.random.default_rng(1).standard_normal(3)            # 1. initialise
    losses, snaps = [], {0: p.copy()}
    for k in range(100):                                        # 6. repeat
        value, g = f.value_and_grad(p)                          # 2-4. predict, loss, gradient
        losses.append(value)
        if k > 0 and losses[-2] - value < 1e-4 * losses[-2]:    # 7. stop
            break
        p = p - 1e-5 * g                                        # 5. step
        snaps[k + 1] = p.copy()
    gen = sg.generate(loss, out / "quadratic_fit.py", [a, b, c], regenerate="symgrad demo")
    fig = plot.figure(2)
    preds = {f"step {k}": q[0] * time_**2 + q[1] * time_ + q[2]
             for k, q in snaps.items() if k in (0, 1, 2, 5, len(losses) - 1)}
    plot.predictions(time_, speed, preds, xlabel="time", ylabel="speed", ax=fig.axes[0],
                     title="Predictions a·t² + b·t + c while training")
    fig.axes[0].set_ylim(-5, 80)
    plot.loss_curves({"SGD, lr = 1e-5": np.array(losses)}, ax=fig.axes[1],
                     title="Mean squared error")
    path = plot.save(fig, out / "quadratic_fit.png")
    return {"lines": [f"loss {losses[0]:.1f} -> {losses[-1]:.1f} in {len(losses) - 1} steps; "
                      f"a, b, c = {np.round(p, 4).tolist()}",
                      f"generated module: {gen}"],
            "figures": [path],
            "numbers": {"initial_loss": losses[0], "final_loss": losses[-1],
                        "params": p.tolist()}}


def backprop(out: Path) -> dict:
    """The computation graph of the textbook seed, differentiated exactly."""
    import symgrad as sg

    w, b = sg.params("w b")
    x, y_true = sg.data("x y_true")
    loss = sg.mean(abs(y_true - (w * x + b)))
    fb = sg.compile(loss, [w, b]).bind(x=np.array([2.0]), y_true=np.array([4.0]))
    value, g = fb.value_and_grad(np.array([3.0, 1.0]))
    d = sg.grad(loss, [w, b])
    return {"lines": [f"loss = {value:g}; d/dw = {g[0]:g}, d/db = {g[1]:g}",
                      f"symbolic: d/dw = {d[0]}, d/db = {d[1]}"],
            "figures": [], "numbers": {"loss": value, "grad": g.tolist()}}


def momentum(out: Path) -> dict:
    """SGD stops in the local minimum; momentum rolls through to the global one."""
    import symgrad as sg
    from symgrad import optim, plot

    w = sg.params("w")
    f = sg.compile(w**4 - 3 * w**2 + w)
    res = {"SGD (lr 0.01)": sg.minimize(f, [2.0], optimizer=optim.sgd(lr=0.01), steps=200),
           "momentum (lr 0.01, beta 0.9)": sg.minimize(
               f, [2.0], optimizer=optim.momentum(lr=0.01, beta=0.9), steps=200)}
    fig = plot.path_1d(f, (-2.0, 2.2), res, title="w⁴ - 3w² + w: 200 steps from w = 2")
    fig.axes[0].set_ylim(-4.5, 8)
    path = plot.save(fig, out / "momentum_escape.png")
    return {"lines": [f"{k:<28} ends at w = {r.x[0]: .4f}, loss {r.fun: .4f}"
                      for k, r in res.items()],
            "figures": [path], "numbers": {k: r.x[0] for k, r in res.items()}}


def two_layer_net(out: Path) -> dict:
    """Dense relu layer + softmax output, mini-batch SGD with momentum."""
    import symgrad as sg
    from symgrad import losses, optim, plot

    H, K = 8, 3
    W1, b1 = sg.params("W1", shape=(H, 2)), sg.params("b1", shape=(H,))
    W2, b2 = sg.params("W2", shape=(K, H)), sg.params("b2", shape=(K,))
    X, Y = sg.data("X", shape=(2,)), sg.data("Y", shape=(K,))
    f = sg.compile(losses.cross_entropy(W2 @ sg.relu(W1 @ X + b1) + b2, Y), [W1, b1, W2, b2])
    rng = np.random.default_rng(0)

    def rings(n):
        lab = rng.integers(0, K, n)
        ang, r = rng.uniform(0, 2 * np.pi, n), 1.0 + lab + 0.2 * rng.standard_normal(n)
        return np.column_stack([r * np.cos(ang), r * np.sin(ang)]), lab

    xtr, ytr = rings(900)
    xte, yte = rings(600)
    x0 = f.pack(W1=rng.standard_normal((H, 2)), b1=np.zeros(H),
                W2=rng.standard_normal((K, H)) * np.sqrt(1 / H), b2=np.zeros(K))
    res = sg.minimize(f, x0, optimizer=optim.momentum(lr=0.05, beta=0.9),
                      data={"X": xtr, "Y": np.eye(K)[ytr]}, batch_size=32, epochs=30, seed=0)
    w = f.unpack(res.x)

    def predict(pts):
        hid = np.maximum(pts @ w["W1"].T + w["b1"], 0.0)
        return np.argmax(hid @ w["W2"].T + w["b2"], axis=1)

    acc = float(np.mean(predict(xte) == yte))
    fig = plot.figure(2, size=(6.0, 5.0))
    plot.decision_regions(predict, xte, yte, ax=fig.axes[0],
                          title=f"Decision regions (test accuracy {acc:.1%})")
    plot.loss_curves({"epoch loss": res.history.epoch_loss}, ax=fig.axes[1], xlabel="epoch",
                     ylabel="cross-entropy", title="SGD + momentum, batch 32")
    path = plot.save(fig, out / "two_layer_net.png")
    return {"lines": [f"{f.n_params} parameters, {res.nit} steps: cross-entropy {res.fun:.4f}, "
                      f"test accuracy {acc:.1%}"],
            "figures": [path], "numbers": {"test_accuracy": acc, "fun": res.fun}}


SCENARIOS = [
    ("rosenbrock", rosenbrock),
    ("quadratic_fit", quadratic_fit),
    ("backprop", backprop),
    ("momentum", momentum),
    ("two_layer_net", two_layer_net),
]


def run(out_dir: str | Path = "out/demo", *, echo: bool = True) -> dict:
    """Run every scenario, write figures and ``summary.json`` into ``out_dir``; return numbers."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = print if echo else (lambda *a, **k: None)
    t_all = time.perf_counter()
    summary: dict = {}
    figures: list[Path] = []
    for i, (name, fn) in enumerate(SCENARIOS, 1):
        t0 = time.perf_counter()
        say(f"[{i}/{len(SCENARIOS)}] {name}: {fn.__doc__.splitlines()[0]}", flush=True)
        r = fn(out)
        for line in r["lines"]:
            say(f"    {line}")
        figures += r["figures"]
        summary[name] = r["numbers"]
        say(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    say(f"done in {time.perf_counter() - t_all:.1f} s. Outputs in {out}:")
    for p in [*figures, out / "quadratic_fit.py", out / "summary.json"]:
        say(f"    {p}")
    return summary
