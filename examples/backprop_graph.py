"""The textbook seed's computation graph, differentiated exactly.

    x1 = w*x,  x2 = x1 + b,  loss = |y_true - x2|     with x = 2, w = 3, b = 1, y_true = 4

Forward: x1 = 6, x2 = 7, loss = 3. Backward (chain rule along the graph):
grad(loss, w) = grad(loss, x2) * grad(x2, x1) * grad(x1, w) = 1 * 1 * 2 = 2 and
grad(loss, b) = grad(loss, x2) * grad(x2, b) = 1 * 1 = 1. (The seed's text prints "= 2" for b;
the product it writes, 1 * 1, is 1.)

symgrad obtains the same numbers from the symbolic derivative of the whole expression, and shows
the code it generates for them. Here x and y_true are data columns (one sample), so the same loss
works on a whole data set (it is the mean absolute error of a line).

Run:  python examples/backprop_graph.py [OUT_DIR]   (OUT_DIR is unused: no figure)
"""

from __future__ import annotations

import sys

import numpy as np

import symgrad as sg

GENERATED = "backprop_graph.py"
w, b = sg.params("w b")
x, y_true = sg.data("x y_true")
LOSS = sg.mean(abs(y_true - (w * x + b)))
PARAMS = [w, b]  # the order of the parameter vector, stated explicitly


def generate(directory):
    """Write the standalone generated module of this example's loss into ``directory``."""
    from pathlib import Path

    return sg.generate(LOSS, Path(directory) / GENERATED, PARAMS,
                       regenerate="python examples/regenerate.py")


def _function_source(source: str, name: str) -> str:
    """The text of one generated function (decorator included)."""
    lines = source.splitlines()
    start = next(i for i, s in enumerate(lines) if s.startswith(f"def {name}(")) - 1
    end = next((i for i in range(start + 2, len(lines)) if lines[i].startswith("@")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def main(out_dir=None) -> dict:
    """Print the forward values, the symbolic and numeric gradients and the generated code."""
    data = {"x": np.array([2.0]), "y_true": np.array([4.0])}
    params = np.array([3.0, 1.0])  # w, b
    f = sg.compile(LOSS, PARAMS)
    symbolic = sg.grad(LOSS, [w, b])
    # bind validates the data once (and lets a column be called x, like the seed's input).
    fb = f.bind(**data)
    loss, g = fb.value_and_grad(params)
    print(f"loss = {LOSS}")
    print(f"forward at x=2, w=3, b=1, y_true=4: x1 = 6, x2 = 7, loss = {loss:g}")
    print(f"d loss/d w = {symbolic[0]}")
    print(f"d loss/d b = {symbolic[1]}")
    print(f"gradient at the point: d/dw = {g[0]:g}, d/db = {g[1]:g}   (kink policy: "
          f"{f.module.KINK_POLICY})")
    chk = sg.check_grad(fb, params, names=f.params)
    print(chk.summary())
    code = _function_source(f.source, "_acc_g") + "\n\n" + _function_source(f.source, "_finish_g")
    print(f"generated code ({f.path}), the pass over the samples that accumulates the loss and "
          "its gradient, then the outer chain rule:")
    print(code)
    return {"loss": loss, "grad": (float(g[0]), float(g[1])),
            "symbolic": (str(symbolic[0]), str(symbolic[1])), "check_ok": chk.ok,
            "code": code, "figures": []}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
