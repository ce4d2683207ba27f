"""The ``symgrad`` command: generate | check | minimize | fit | demo.

A loss is given either as a Python file that defines ``loss`` (a SymPy expression, or a Python
function of the parameters, as for ``sg.compile``), and optionally ``data`` (a dict of arrays)
and ``x0``; or as an expression string, parsed safely (see :mod:`symgrad.lang.parse`: nothing in
the string is executed) with ``--params``/``--data`` naming its symbols::

    symgrad generate "(x2 - x1**2)**2 + (1 - x1)**2" -o rosen.py
    symgrad check "mean((a*t + b - y)**2)" --data t,y --data-file points.csv --at 1,2
    symgrad minimize "(x2 - x1**2)**2 + (1 - x1)**2" --x0 2,2 --optimizer sgd --lr 0.2 \\
        --schedule time_decay:0.01 --steps 100 --plot rosen.png
    symgrad fit "a*exp(-b*t) + c - y" data.csv --p0 a=1 b=0.1 c=0
    symgrad demo --out out/demo

Errors print one line (``symgrad: error: ...``) and exit with status 2; a failed gradient
check exits with 1. ``SYMGRAD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import os
import runpy
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .check.report import METHODS
from .cliargs import CLIError, _names, _Parser, parse_vector
from .datafile import read_data_file

__all__ = ["CLIError", "build_parser", "main", "parse_schedule", "parse_vector"]

SECOND_ORDER = ("lbfgs", "newton")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", *SECOND_ORDER)
SCHEDULE_HELP = ("constant | time_decay:DECAY | step:STEP_SIZE[:GAMMA] | "
                 "exponential:GAMMA[:STEP_SIZE] | cosine:DECAY_STEPS[:ALPHA]")


def parse_schedule(spec: str | None, lr: float):
    """A learning-rate schedule from ``--schedule`` (``None``/``constant``: the float ``lr``)."""
    from . import schedules

    if spec is None or spec == "constant":
        return lr
    name, _, rest = spec.partition(":")
    args = [a for a in rest.split(":") if a] if rest else []
    try:
        nums = [float(a) for a in args]
    except ValueError:
        raise CLIError(f"--schedule {spec!r}: the values after the name must be numbers "
                       f"({SCHEDULE_HELP})") from None

    def steps(v: float, what: str) -> int:  # 2.5 was truncated to 2
        if not (math.isfinite(v) and v == int(v)):
            raise CLIError(f"--schedule {spec!r}: {what} must be a whole number of steps, "
                           f"got {v:g}")
        return int(v)

    table = {
        "time_decay": (lambda d: schedules.time_decay(lr, decay=d), 1, 1),
        "step": (lambda s, g=0.1: schedules.step(lr, step_size=steps(s, "the step size"),
                                                 gamma=g), 1, 2),
        "exponential": (lambda g, s=1.0: schedules.exponential(lr, gamma=g, step_size=s), 1, 2),
        "cosine": (lambda t, a=0.0: schedules.cosine(lr, decay_steps=steps(t, "decay_steps"),
                                                     alpha=a), 1, 2),
    }
    if name not in table:
        raise CLIError(f"unknown schedule {name!r}: use {SCHEDULE_HELP}")
    fn, lo, hi = table[name]
    if not lo <= len(nums) <= hi:
        raise CLIError(f"--schedule {spec!r}: expected {SCHEDULE_HELP}")
    return fn(*nums)


# --------------------------------------------------------------------------- loading a loss


@dataclass(frozen=True)
class LossSource:
    """What the command line described: the loss, and data/x0 when a file provides them."""

    loss: Any
    params: list | None  # parameter symbols in packing order (None: the loss decides)
    data: dict[str, np.ndarray] | None
    x0: np.ndarray | None
    origin: str


def load_loss(spec: str, params: str | None = None, data: str | None = None,
              data_file: str | None = None) -> LossSource:
    """Read the loss from a ``.py`` file or parse it from an expression string."""
    file_data = read_data_file(data_file) if data_file else None
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise CLIError(f"{spec}: no such file (a .py file must define `loss`)")
        if params or data:
            raise CLIError("--params/--data are for expression strings; a Python file declares "
                           "its parameters and data with sg.params / sg.data")
        ns = runpy.run_path(str(path), run_name="__symgrad_loss__")
        if "loss" not in ns:
            raise CLIError(f"{spec} does not define `loss` (a SymPy expression or a function "
                           "of the parameters)")
        fdata = ns.get("data")
        if fdata is not None and not isinstance(fdata, Mapping):
            raise CLIError(f"{spec}: `data` must be a dict of arrays, got {type(fdata).__name__}")
        fdata = dict(fdata) if fdata is not None else None
        if file_data is not None:
            fdata = {**(fdata or {}), **file_data}
        x0 = ns.get("x0")
        return LossSource(ns["loss"], None, fdata,
                          None if x0 is None else np.asarray(x0, dtype=np.float64), spec)
    from .columns import check_column_names
    from .lang.parse import names_in, param_names, parse_loss
    from .lang.symbols import Param

    dnames = _names(data)
    if file_data is not None:
        check_column_names(spec, list(file_data), str(data_file), dnames, params is not None)
    if dnames is None and file_data is not None:
        # only the columns the loss reads are data names (and must be valid names): an unused
        # column named max, log or _id is no error
        dnames = [c for c in file_data if c in names_in(spec) and c not in (_names(params) or [])]
    expr = parse_loss(spec, params=_names(params), data=dnames)
    if file_data is not None and data is not None:
        file_data = {k: v for k, v in file_data.items() if k in dnames}
    # The packing order is passed explicitly: it must not depend on symbols made earlier.
    order = [Param(n) for n in param_names(spec, _names(params), dnames)]
    return LossSource(expr, order, file_data, None, spec)


def _warn_unused_columns(f, src: LossSource, command: str) -> None:
    unused = [c for c in (src.data or {}) if c not in f.data_names]
    if unused:
        print(f"symgrad {command}: warning: data column(s) not used by the loss: "
              f"{', '.join(unused)}", file=sys.stderr)


def _compile(src: LossSource):
    import symgrad as sg

    f = sg.compile(src.loss, src.params)
    if f.data_names and src.data is None:
        raise CLIError(f"this loss needs data columns {', '.join(f.data_names)}: pass "
                       "--data-file FILE (.csv with a header row, or .npz)")
    return f


def _data_for(f, src: LossSource) -> dict[str, np.ndarray] | None:
    if not f.data_names:
        return None
    return {k: v for k, v in (src.data or {}).items() if k in f.data_names}


def _point(f, text: str | None, default: np.ndarray | None, what: str, seed: int = 0
           ) -> np.ndarray:
    if text is not None:
        x = parse_vector(text, what)
    elif default is not None:
        x = default
    else:
        x = np.random.default_rng(seed).standard_normal(f.n_params)
    if f.n_params is not None and x.size != f.n_params:
        names = f.labels if len(f.labels) <= 12 else f.params
        raise CLIError(f"{what} has {x.size} values but the loss has {f.n_params} parameters "
                       f"({', '.join(names)})")
    return x


def _entries(f, x: np.ndarray) -> list[tuple[str, float]]:
    """``(name, value)`` per entry of ``x``: ``w[0], w[1], b`` for a vector ``w`` (zipping
    ``f.params`` with ``x`` failed for any vector parameter)."""
    names = f.labels if len(f.labels) == x.size else [f"x[{i}]" for i in range(x.size)]
    return list(zip(names, x.tolist(), strict=True))


# --------------------------------------------------------------------------- commands


def cmd_generate(a: argparse.Namespace) -> int:
    import symgrad as sg

    out = Path(a.output)
    if os.path.isfile(a.loss) and os.path.exists(out) and os.path.samefile(a.loss, out):
        raise CLIError(f"-o {a.output} is the loss file itself: write the module to another path")
    src = load_loss(a.loss, a.params, a.data)
    argv = ["symgrad", "generate", a.loss, "-o", a.output]
    if a.params:
        argv += ["--params", a.params]
    if a.data:
        argv += ["--data", a.data]
    kind = "residual" if a.residuals else None
    path = sg.generate(src.loss, out, src.params, kind=kind,
                       regenerate=shlex.join(argv + ["--residuals"] * bool(kind)), force=a.force)
    print(f"wrote {path}")
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    import symgrad as sg

    src = load_loss(a.loss, a.params, a.data, a.data_file)
    f = _compile(src)
    _warn_unused_columns(f, src, "check")
    x = _point(f, a.at, src.x0, "--at", a.seed)
    chk = sg.check_grad(f, x, data=_data_for(f, src), method=a.method)
    print(f"loss: {f.expr}")
    print(f"at {dict(_entries(f, np.round(x, 6)))}")
    print(chk.table(max_rows=a.max_rows))
    if a.hessian:
        hc = sg.check_hessian(f, x, data=_data_for(f, src))
        print(hc.table(max_rows=a.max_rows))
        return 0 if chk.ok and hc.ok else 1
    return 0 if chk.ok else 1


def cmd_minimize(a: argparse.Namespace) -> int:
    import symgrad as sg
    from symgrad import optim

    src = load_loss(a.loss, a.params, a.data, a.data_file)
    given = [flag for flag, v in (("--lr", a.lr), ("--beta", a.beta),
                                  ("--schedule", a.schedule)) if v is not None]
    name = a.optimizer or ("sgd" if given or a.batch_size or a.epochs else "lbfgs")
    if name in SECOND_ORDER:
        if given:
            raise CLIError(f"{', '.join(given)}: for the first-order optimizers; {name} "
                           "chooses its own step lengths")
        opt = getattr(optim, name)()
    else:
        if a.lr is not None and not a.lr > 0:
            raise CLIError(f"--lr must be > 0, got {a.lr}")
        lr = a.lr if a.lr is not None else optim.DEFAULTS[name]["lr"]
        kw: dict[str, Any] = {"lr": parse_schedule(a.schedule, lr)}
        if a.beta is not None:
            if name not in ("momentum", "nesterov"):
                raise CLIError("--beta is for --optimizer momentum or nesterov")
            kw["beta"] = a.beta
        opt = getattr(optim, name)(**kw)
    f = _compile(src)
    _warn_unused_columns(f, src, "minimize")
    x0 = _point(f, a.x0, src.x0 if src.x0 is not None else np.zeros(f.n_params), "--x0")
    data = _data_for(f, src)
    t0 = time.perf_counter()
    res = sg.minimize(f, x0, optimizer=opt, data=data, steps=a.steps, epochs=a.epochs,
                      batch_size=a.batch_size, seed=a.seed, tol=a.tol, gtol=a.gtol,
                      progress=not a.quiet, record_x=bool(a.plot) and f.n_params == 2)
    dt = time.perf_counter() - t0
    print(f"loss: {f.expr}")
    print(f"optimizer: {opt!r}")
    print(f"{res.status}: {res.message} ({res.nit} steps, {dt:.3g} s)")
    shown = _entries(f, res.x)
    for name, v in shown[:20]:
        print(f"  {name} = {v:.10g}")
    if len(shown) > 20:
        print(f"  ... ({len(shown) - 20} more parameters)")
    print(f"loss = {res.fun:.10g}, |gradient| = {float(np.linalg.norm(res.jac)):.3g}")
    if a.plot:
        path = _plot_minimize(f, res, a.plot)
        print(f"figure: {path}")
    return 0 if res.status != "diverged" else 1


def _plot_minimize(f, res, path: str) -> Path:
    from . import plot

    two_d = f.n_params == 2 and not f.data_names
    fig = plot.figure(2 if two_d else 1)
    plot.loss_curves({"loss": res}, ax=fig.axes[-1])
    if two_d:
        P = res.history.x
        lo, hi = P.min(axis=0), P.max(axis=0)
        pad = np.maximum(0.25 * (hi - lo), 0.5)
        plot.contour(f, (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]),
                     trajectories={"path": res}, labels=f.labels, resolution=120,
                     title=str(f.expr)[:60], ax=fig.axes[0])
    return plot.save(fig, path)


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run

    run(a.out, examples=a.examples)
    return 0


# --------------------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    p = _Parser(prog="symgrad", description="Exact symbolic gradients of SymPy losses, "
                "compiled to Numba kernels; optimizers, a gradient checker and plots.",
                epilog="A LOSS is a .py file defining `loss` (and optionally `data`, `x0`) or "
                "an expression string such as \"mean((a*t + b - y)**2)\". Vectors are comma "
                "separated; write --x0=-1,2 when the first value is negative.")
    p.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{generate,check,minimize,fit,demo}",
                           parser_class=_Parser)

    def loss_args(q: argparse.ArgumentParser, data_file: bool = True) -> None:
        q.add_argument("loss", metavar="LOSS", help="a .py file defining `loss`, or an expression")
        q.add_argument("--params", help="parameter names in order (default: every name not "
                       "in --data, sorted: a, b, x2, x10)")
        q.add_argument("--data", help="data column names (default: the data file's columns)")
        if data_file:
            q.add_argument("--data-file", help="data columns: .csv with a header row, or .npz")

    g = sub.add_parser("generate", help="write the standalone generated module of a loss")
    loss_args(g, data_file=False)
    g.add_argument("-o", "--output", required=True, help="the module to write (NAME.py); an "
                   "existing file is replaced only if symgrad generated it")
    g.add_argument("--force", action="store_true", help="replace OUTPUT even if symgrad did not "
                   "generate it (or it is read-only or a symbolic link)")
    g.add_argument("--residuals", action="store_true", help="LOSS is a residual, one per sample "
                   "(\"a*exp(-b*t) - y\" --data t,y): write sg.compile_residuals' module")
    g.set_defaults(run=cmd_generate)

    c = sub.add_parser("check", help="compare the gradient with finite differences / "
                       "complex step and print the table")
    loss_args(c)
    c.add_argument("--at", help="the point (default: the file's x0, else seeded random)")
    c.add_argument("--method", default="auto", choices=METHODS)
    c.add_argument("--hessian", action="store_true", help="also check the Hessian and HVP")
    c.add_argument("--seed", type=int, default=0, help="seed of the random point")
    c.add_argument("--max-rows", type=int, default=30, help="show at most this many rows")
    c.set_defaults(run=cmd_check)

    m = sub.add_parser("minimize", help="run an optimizer on a loss")
    loss_args(m)
    m.add_argument("--x0", help="starting point (default: the file's x0, else zeros)")
    m.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="default: sgd with --lr, --schedule, --batch-size or --epochs, "
                   "else lbfgs")
    m.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    m.add_argument("--beta", type=float, help="momentum coefficient (momentum, nesterov)")
    m.add_argument("--schedule", help=f"learning-rate schedule: {SCHEDULE_HELP}")
    m.add_argument("--steps", type=int, help="optimizer steps (default 1000)")
    m.add_argument("--epochs", type=int, help="passes over the data (instead of --steps)")
    m.add_argument("--batch-size", type=int, help="mini-batch size (default: full batch)")
    m.add_argument("--seed", type=int, default=0, help="seed of the mini-batch shuffling")
    m.add_argument("--tol", type=float, help="stop when the relative loss change is below")
    m.add_argument("--gtol", type=float, help="stop when the gradient norm is below")
    m.add_argument("--plot", help="write a figure (loss curve; contours for 2 parameters)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m.set_defaults(run=cmd_minimize)

    from .lsq.command import add_parser as add_fit

    add_fit(sub)
    d = sub.add_parser("demo", help="run the seed scenarios (the example scripts) end to end "
                       "and write figures")
    d.add_argument("--out", default=os.path.join("out", "demo"),
                   help="output directory (default: out/demo)")
    d.add_argument("--examples", help="directory of the example scripts (default: examples/ of "
                   "the source checkout symgrad is imported from)")
    d.set_defaults(run=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symgrad`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback (SYMGRAD_DEBUG=1 to see it)
        if os.environ.get("SYMGRAD_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        known = isinstance(exc, CLIError | ValueError | TypeError | ImportError | OSError |
                           KeyError | IndexError)
        if not known:
            msg = f"{type(exc).__name__}: {msg}"
        print(f"symgrad {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
