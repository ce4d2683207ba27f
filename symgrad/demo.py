"""``symgrad demo``: the seed scenarios end to end, by running the example scripts.

1. Rosenbrock-like ``(x2 - x1^2)^2 + (1 - x1)^2`` from (2, 2), 100 steps of SGD: lr 0.1, lr 0.2,
   lr 0.2 with time decay 0.01 (the MATLAB dlfeval seed): ``examples/rosenbrock_learning_rate.py``.
2. The seven-step quadratic fit to noisy speed data, lr 1e-5 (the textbook seed):
   ``examples/quadratic_fit.py``.
3. The backprop graph ``|y_true - (w*x + b)|`` at x=2, w=3, b=1, y_true=4: gradients (2, 1):
   ``examples/backprop_graph.py``.
4. Momentum rolling through a shallow local minimum where SGD stops:
   ``examples/momentum_escape.py``.
5. A two-layer relu/softmax network, mini-batch SGD with momentum, three rings: accuracy > 95%:
   ``examples/two_layer_net.py``.

The demo imports each script and calls its ``main(out_dir)``: the scripts are the one copy of the
scenarios. They live in the source checkout's ``examples/`` next to the package (found by
:func:`examples_dir`), which an editable install (``pip install -e .``) uses in place; a wheel
does not ship them, so there ``symgrad demo`` says so and asks for ``--examples DIR``.

>>> from symgrad.demo import SCENARIOS
>>> [name for name, _ in SCENARIOS]
['rosenbrock', 'quadratic_fit', 'backprop', 'momentum', 'two_layer_net']
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

__all__ = ["SCENARIOS", "examples_dir", "load_example", "run"]

#: (name in summary.json, example script in examples/)
SCENARIOS = [
    ("rosenbrock", "rosenbrock_learning_rate"),
    ("quadratic_fit", "quadratic_fit"),
    ("backprop", "backprop_graph"),
    ("momentum", "momentum_escape"),
    ("two_layer_net", "two_layer_net"),
]


def examples_dir(path: str | Path | None = None) -> Path:
    """The directory of the example scripts: ``path``, or ``examples/`` of the source checkout
    the package is imported from. FileNotFoundError (with what to do) when it has none."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "examples"
    missing = [s for _, s in SCENARIOS if not (where / f"{s}.py").is_file()]
    if missing:
        raise FileNotFoundError(
            f"symgrad demo runs the example scripts of a source checkout, and {where} has no "
            f"{missing[0]}.py (a wheel does not install examples/): clone the repository and "
            "`pip install -e .` there, or pass --examples DIR with a checkout's examples/")
    return where


def load_example(name: str, directory: str | Path | None = None) -> types.ModuleType:
    """Import ``examples/<name>.py`` as a module (examples/ is not a package); imported once
    per process under the name ``symgrad_example_<name>``, as the tests and regenerate.py do."""
    mod_name = f"symgrad_example_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, examples_dir(directory) / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod


def _numbers(result: dict) -> dict:
    """The JSON-able numbers of an example's result (figures and long texts left out)."""
    out = {}
    for k, v in result.items():
        if k == "figures" or (isinstance(v, str) and len(v) > 200):
            continue
        if isinstance(v, dict):
            v = _numbers(v)
        elif isinstance(v, np.ndarray | tuple | list):
            v = np.asarray(v).tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def run(out_dir: str | Path = "out/demo", *, echo: bool = True,
        examples: str | Path | None = None) -> dict:
    """Run every scenario's example, write figures and ``summary.json`` into ``out_dir``;
    return the numbers (per scenario, what the example's ``main`` returned)."""
    where = examples_dir(examples)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = print if echo else (lambda *a, **k: None)
    t_all = time.perf_counter()
    summary: dict = {}
    figures: list[Path] = []
    for i, (name, script) in enumerate(SCENARIOS, 1):
        t0 = time.perf_counter()
        mod = load_example(script, where)
        title = (mod.__doc__ or script).strip().splitlines()[0]
        say(f"[{i}/{len(SCENARIOS)}] {name}: {title}  (examples/{script}.py)", flush=True)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            result = mod.main(out)
        for line in text.getvalue().rstrip("\n").splitlines():
            say(f"    {line}")
        figures += [Path(p) for p in result.get("figures", ())]
        summary[name] = _numbers(result)
        say(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"done in {time.perf_counter() - t_all:.1f} s. Outputs in {out}:")
    for p in [*figures, out / "quadratic_fit.py", out / "summary.json"]:
        say(f"    {p}")
    return summary
