"""The public pipeline: ``compile`` and ``generate`` compose the stages top to bottom.

    problem (validate) -> derive (exact) -> codegen (text) -> kernel (file, import, njit)

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> sg.grad((x2 - x1**2)**2, [x1, x2]).T
Matrix([[-4*x1*(-x1**2 + x2), -2*x1**2 + 2*x2]])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sympy as sp

from .ad.derive import KinkPolicy, derive
from .backend.numba import CodegenOptions, module_source
from .build.array import array_source, compile_array
from .build.cache import write_atomic
from .build.mixed import compile_sum, sum_source
from .build.model import compile_model, model_source, with_outputs
from .build.options import check_options, kind_of
from .build.output import check_output
from .build.residual import compile_residuals, residual_module
from .build.scalar_cache import cached_scalar
from .ir.problem import ProblemError, problem
from .lang.symbols import as_expr, normalize_name
from .runtime.array import ArrayKernel
from .runtime.base import Kernel
from .runtime.model import ModelKernel
from .runtime.residual import ResidualKernel
from .runtime.scalar import ScalarKernel
from .runtime.sum_kernel import SumKernel
from .version import __version__

__all__ = ["compile", "generate", "grad", "hessian", "jacobian"]


def _wrt(wrt, exprs: Sequence[sp.Basic] = ()) -> list[sp.Symbol]:
    """The variables to differentiate by: symbols, Matrices of them, or names of symbols of
    ``exprs`` (a name is looked up, never evaluated)."""
    if isinstance(wrt, str | sp.Basic) and not isinstance(wrt, sp.MatrixBase):
        wrt = [wrt]
    out: list = []
    for w in wrt:
        out.extend(list(w) if isinstance(w, sp.MatrixBase) else [w])
    return [_by_name(w, exprs) if isinstance(w, str) else w for w in out]


def _by_name(name: str, exprs: Sequence[sp.Basic]) -> sp.Symbol:
    name = normalize_name(name)
    found = {s for e in exprs for s in e.free_symbols if getattr(s, "name", None) == name}
    if len(found) != 1:
        why = "is not a symbol of the expression" if not found else "names several symbols"
        raise ProblemError(f"wrt names '{name}', which {why}: pass the symbol itself")
    return found.pop()


def _expr(e, what: str) -> sp.Basic:
    try:
        return as_expr(e, what)
    except TypeError as exc:
        raise ProblemError(str(exc)) from None


def grad(expr, wrt) -> sp.Matrix:
    """The exact gradient of a scalar expression as a column Matrix.

    ``wrt`` is a symbol, a list or Matrix of symbols, or their names. A string ``expr`` is
    refused (SymPy would evaluate it); parse text with :func:`symgrad.lang.parse.parse_loss`.

    >>> import symgrad as sg
    >>> x = sg.params("x")
    >>> sg.grad(sg.relu(x) + x**3, x)
    Matrix([[3*x**2 + Heaviside(x, 0)]])
    """
    e = _expr(expr, "sg.grad")
    if isinstance(e, sp.MatrixBase):
        raise ProblemError("grad takes a scalar expression; use sg.jacobian for vectors")
    return sp.Matrix([sp.diff(e, w) for w in _wrt(wrt, [e])])


def hessian(expr, wrt) -> sp.Matrix:
    """The exact Hessian of a scalar expression.

    >>> import symgrad as sg
    >>> x, y = sg.params("x y")
    >>> sg.hessian(x**2*y, [x, y])
    Matrix([
    [2*y, 2*x],
    [2*x,   0]])
    """
    e = _expr(expr, "sg.hessian")
    ws = _wrt(wrt, [e])
    g = grad(e, ws)
    return sp.Matrix(len(ws), len(ws), lambda i, j: sp.diff(g[i], ws[j]))


def jacobian(exprs, wrt) -> sp.Matrix:
    """The exact Jacobian of a vector of expressions (rows: expressions, columns: ``wrt``).

    >>> import symgrad as sg
    >>> x, y = sg.params("x y")
    >>> sg.jacobian([x*y, x + y], [x, y])
    Matrix([
    [y, x],
    [1, 1]])
    """
    if isinstance(exprs, str):
        _expr(exprs, "sg.jacobian")
    es = list(exprs) if not isinstance(exprs, sp.Basic) or isinstance(exprs, sp.MatrixBase) \
        else [exprs]
    es = [_expr(e, "sg.jacobian") for e in es]
    ws = _wrt(wrt, es)
    return sp.Matrix(len(es), len(ws), lambda i, j: sp.diff(es[i], ws[j]))


def compile(loss, params: Sequence | None = None, *, kind: str | None = None,
            policy: KinkPolicy | None = None, parallel: bool | None = None,
            dtype: str | None = None, data: Sequence | str | None = None,
            outputs: dict | None = None, fuse: bool | None = None
            ) -> Kernel | ArrayKernel | ModelKernel | ResidualKernel | SumKernel:
    """Compile a loss (a SymPy expression or a Python function of its parameters) to a Kernel.

    The module is kept in the cache directory (see :mod:`symgrad.build.cache`) under a key of
    everything that shapes it, so the same loss in another process neither differentiates nor
    generates again and reuses Numba's on-disk machine code. ``parallel=None`` uses the
    ``prange`` variant above ``kernel.PARALLEL_THRESHOLD`` samples; True/False force it. A
    loss written on arrays (``sg.params``/``sg.data`` with ``shape=``) gives an
    :class:`ArrayKernel` (or, small, a one-pass ``FusedKernel``: ``fuse`` below);
    ``dtype="float32"`` computes it in float32 (float64 is the default; ``fuse`` below).

    An expression that keeps the sample axis (logits, a fitted curve ``a*exp(-b*t) + c``) is a
    model: it compiles to a :class:`~symgrad.runtime.model.ModelKernel` whose call gives
    one output per sample. ``outputs={"proba": sg.softmax(logits)}`` compiles models next to
    the loss, packed like its ``x``: ``f.outputs["proba"](x, X=...)``. Residuals (one
    expression per sample, or a list/Matrix of them) compile with ``kind="residual"`` to a
    :class:`~symgrad.runtime.residual.ResidualKernel` (as :func:`symgrad.compile_residuals`);
    ``data=`` names plain symbols of residuals that are data columns.

    Every kind takes the same options; one a kind cannot honour yet is refused with why:

    - ``kind``: None detects "scalar", "array", "model" or "sum" (index sums plus array
      terms: a :class:`~symgrad.runtime.sum_kernel.SumKernel`); "residual" must be asked for;
    - ``policy``: the :class:`KinkPolicy` (derivatives at kinks);
    - ``parallel``: None runs a scalar loss's and a residual module's sample loops on
      threads from ``kernel.PARALLEL_THRESHOLD`` samples (the chunks of the ``prange``
      variant, which is not compiled: the same bits), and the threaded cores of an array loss
      for calls large enough to pay (the same result for any number of threads); True/False
      force it;
      models have no variant yet;
    - ``dtype``: "float64" (default) or "float32" for array losses, models, scalar losses
      over data samples and residuals over data columns (float32 per-sample terms, float64
      sums; x, g and results float64);
    - ``fuse``: None lowers a small array loss (a linear or logistic model, a small
      layer: :func:`symgrad.passes.fuse.fusable`) to one pass over the samples, a
      :class:`~symgrad.runtime.fused.FusedKernel`, and any other to array code (BLAS, one loop
      per node); True insists on the one pass (a ValueError says why not), False keeps the
      array code. A fused float32 loss computes its data and per-sample arithmetic in float32
      with float64 x, g and results (as a float32 scalar loss); the float32 array code takes
      and returns float32 x and g.

    >>> import symgrad as sg
    >>> def my_loss(x1, x2):
    ...     return (x2 - x1**2)**2 + (1 - x1)**2
    >>> f = sg.compile(my_loss)
    >>> f.params, f.value_and_grad([2.0, 2.0])[1].tolist()
    (('x1', 'x2'), [18.0, -4.0])
    """
    k = kind_of(loss, kind)
    policy, real = check_options(k, policy=policy, parallel=parallel, dtype=dtype, fuse=fuse)
    if data is not None and k != "residual":
        raise ProblemError("data= names plain symbols that are data columns of residuals "
                           "(kind='residual'); in a loss declare data with sg.data('t y')")
    if k == "sum" and outputs is not None:
        raise ProblemError("outputs= is not available for a sum of index sums and array terms "
                           "yet: compile the models with sg.compile(model) on their own")
    if outputs is not None:
        f = compile(loss, params, kind=k, policy=policy, parallel=parallel, dtype=real,
                    data=data, fuse=fuse)
        return with_outputs(f, outputs, policy=policy, dtype=real)
    if k == "residual":
        return compile_residuals(loss, params, data, policy=policy, parallel=parallel,
                                 dtype=real, fuse=fuse)
    if k == "model":
        return compile_model(loss, params, policy=policy, dtype=real)
    if k == "array":
        return compile_array(loss, params, policy=policy, dtype=real, parallel=parallel,
                             fuse=fuse)
    if k == "sum":
        return compile_sum(loss, params, policy=policy, parallel=parallel, fuse=fuse,
                           dtype=real)
    prob = problem(loss, params)
    path, src, mod = cached_scalar(prob, policy, real)
    return ScalarKernel(prob, src, path, mod, parallel=None if parallel is None else bool(parallel),
                        policy=policy)


def generate(loss, path: str | Path, params: Sequence | None = None, *,
             kind: str | None = None, policy: KinkPolicy | None = None,
             parallel: bool | None = None, dtype: str | None = None,
             data: Sequence | str | None = None, regenerate: str | None = None,
             force: bool = False, fuse: bool | None = None) -> Path:
    """Write a standalone module (needs only NumPy and Numba) and return its path.

    Every kind :func:`compile` builds can be written, with the same options: a scalar loss, an
    array loss, a model, and residuals with ``kind="residual"`` (the module of
    :func:`symgrad.compile_residuals`: ``residuals``, ``rows``, ``jvp``, ``vjp``, ``normal``).
    ``parallel`` is a choice made when a kernel runs, not written in the module (a scalar
    module has both ``value`` and ``value_parallel``): it is refused here. ``fuse`` is
    :func:`compile`'s: a small array loss is written as the one-pass module ``compile`` runs.

    The text is deterministic; the file is written atomically and only when its bytes change.
    ``regenerate`` is the command recorded in the header. An existing file is replaced only when
    it is a writable regular file that symgrad generated (its first line is symgrad's header),
    or with ``force=True``; the module name must not shadow a standard-library or installed
    module (``math.py``, ``numpy.py``).
    """
    path = Path(path)
    k = kind_of(loss, kind)
    if parallel is not None:
        raise ValueError("parallel= is chosen when a kernel runs, not written in a module: a "
                         "generated scalar module has both value(...) and value_parallel(...); "
                         "call the one you want")
    policy, real = check_options(k, policy=policy, dtype=dtype, fuse=fuse)
    if data is not None and k != "residual":
        raise ProblemError("data= names plain symbols that are data columns of residuals "
                           "(kind='residual'); in a loss declare data with sg.data('t y')")
    check_output(path, force)
    what = "resid" if k == "residual" else "loss"
    tail = "".join([", kind='residual'" if k == "residual" else "",
                    f", dtype={real!r}" if real != "float64" else "",
                    f", fuse={fuse!r}" if fuse is not None else ""])
    opts = CodegenOptions(version=__version__, regenerate=regenerate or
                          f"symgrad.generate({what}, {str(path.as_posix())!r}{tail})")
    if k == "residual":
        src = residual_module(loss, params, data, policy, opts, real)
    elif k == "model":
        src = model_source(loss, params, policy, opts.regenerate, real)[1]
    elif k == "array":
        src = array_source(loss, params, policy, opts.regenerate, real, fuse)[1]
    elif k == "sum":
        src = sum_source(loss, params, policy, opts, fuse, real)
    else:
        src = module_source(derive(problem(loss, params), policy), opts, real)
    try:
        write_atomic(path, src)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
