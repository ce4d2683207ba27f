"""The public pipeline: ``compile`` and ``generate`` compose the stages top to bottom.

    problem (validate) -> derive (exact) -> codegen (text) -> kernel (file, import, njit)

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> sg.grad((x2 - x1**2)**2, [x1, x2]).T
Matrix([[-4*x1*(-x1**2 + x2), -2*x1**2 + 2*x2]])
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import sympy as sp

from . import __version__
from .cache import cached_module, write_atomic
from .codegen import CodegenOptions, header, module_source
from .derive import KinkPolicy, derive
from .kernel import Kernel
from .output import check_output
from .problem import ProblemError, problem
from .symbols import Data

__all__ = ["compile", "generate", "grad", "hessian", "jacobian"]


def _wrt(wrt) -> list[sp.Symbol]:
    if isinstance(wrt, sp.Basic) and not isinstance(wrt, sp.MatrixBase):
        return [wrt]
    out: list = []
    for w in wrt:
        out.extend(list(w) if isinstance(w, sp.MatrixBase) else [w])
    return out


def grad(expr, wrt) -> sp.Matrix:
    """The exact gradient of a scalar expression as a column Matrix.

    >>> import symgrad as sg
    >>> x = sg.params("x")
    >>> sg.grad(sg.relu(x) + x**3, x)
    Matrix([[3*x**2 + Heaviside(x, 0)]])
    """
    e = sp.sympify(expr)
    if isinstance(e, sp.MatrixBase):
        raise ProblemError("grad takes a scalar expression; use sg.jacobian for vectors")
    return sp.Matrix([sp.diff(e, w) for w in _wrt(wrt)])


def hessian(expr, wrt) -> sp.Matrix:
    """The exact Hessian of a scalar expression.

    >>> import symgrad as sg
    >>> x, y = sg.params("x y")
    >>> sg.hessian(x**2*y, [x, y])
    Matrix([
    [2*y, 2*x],
    [2*x,   0]])
    """
    ws = _wrt(wrt)
    g = grad(expr, ws)
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
    es = list(exprs) if not isinstance(exprs, sp.Basic) or isinstance(exprs, sp.MatrixBase) \
        else [exprs]
    ws = _wrt(wrt)
    return sp.Matrix(len(es), len(ws), lambda i, j: sp.diff(es[i], ws[j]))


def _source(loss, params, policy, regenerate: str) -> tuple:
    prob = problem(loss, params)
    der = derive(prob, policy)
    return prob, module_source(der, CodegenOptions(regenerate=regenerate, version=__version__))


def compile(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
            parallel: bool | None = None) -> Kernel:
    """Compile a loss (a SymPy expression or a Python function of its parameters) to a Kernel.

    The module is kept in the cache directory (see :mod:`symgrad.cache`) under a key of
    everything that shapes it, so the same loss in another process neither differentiates nor
    generates again and reuses Numba's on-disk machine code. ``parallel=None`` uses the
    ``prange`` variant above ``kernel.PARALLEL_THRESHOLD`` samples; True/False force it.

    >>> import symgrad as sg
    >>> def my_loss(x1, x2):
    ...     return (x2 - x1**2)**2 + (1 - x1)**2
    >>> f = sg.compile(my_loss)
    >>> f.params, f.value_and_grad([2.0, 2.0])[1].tolist()
    (('x1', 'x2'), [18.0, -4.0])
    """
    prob = problem(loss, params)
    policy = policy or KinkPolicy()
    opts = CodegenOptions(regenerate="symgrad.compile(loss)", version=__version__)
    path, src, mod = cached_module(
        _cache_key(prob, policy, opts),
        lambda digest: header(prob, policy, opts, digest),
        lambda: module_source(derive(prob, policy), opts))
    return Kernel(prob, src, path, mod, parallel=parallel)


def _cache_key(prob, policy: KinkPolicy, opts: CodegenOptions) -> str:
    """A hash of every input of derive and codegen: the whole validated problem (expression,
    ordered scalar parameters and vectors, data columns and their layout, reductions), the kink
    policy, the codegen options and the code of the generator itself.

    The key is computed without deriving (a warm process skips SymPy); the entry's header is
    then checked against this problem before it is used (:func:`symgrad.cache.cached_module`).
    """
    parts = [_canon(prob), _canon(policy), _canon(opts), _generator_digest()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _canon(obj) -> str:
    """A canonical text of a problem's parts: ``srepr`` for SymPy objects plus the column layout
    of data symbols (not in ``srepr``), recursing into dataclasses and tuples field by field."""
    if isinstance(obj, sp.Basic):
        layout = sorted((d.name, d.column, repr(d.component), repr(d.width))
                        for d in obj.atoms(Data))
        return f"{sp.srepr(obj)}{layout!r}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return f"{type(obj).__name__}(" + ", ".join(
            f"{f.name}={_canon(getattr(obj, f.name))}" for f in dataclasses.fields(obj)) + ")"
    if isinstance(obj, tuple | list):
        return "(" + ", ".join(_canon(o) for o in obj) + ")"
    return repr(obj)


@functools.cache
def _generator_digest() -> str:
    """Hash of the modules that turn a problem into text (a code change invalidates the cache)."""
    here = Path(__file__).parent
    h = hashlib.sha256(__version__.encode())
    for name in ("derive.py", "codegen.py", "printer.py", "functions.py", "problem.py",
                 "symbols.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


def generate(loss, path: str | Path, params: Sequence | None = None, *,
             policy: KinkPolicy | None = None, regenerate: str | None = None,
             force: bool = False) -> Path:
    """Write a standalone module (needs only NumPy and Numba) and return its path.

    The text is deterministic; the file is written atomically and only when its bytes change.
    ``regenerate`` is the command recorded in the header. An existing file is replaced only when
    it is a writable regular file that symgrad generated (its first line is symgrad's header),
    or with ``force=True``; the module name must not shadow a standard-library or installed
    module (``math.py``, ``numpy.py``).
    """
    path = Path(path)
    check_output(path, force)
    _, src = _source(loss, params, policy,
                     regenerate or f"symgrad.generate(loss, {str(path.as_posix())!r})")
    try:
        write_atomic(path, src)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
