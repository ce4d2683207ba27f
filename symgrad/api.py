"""The public pipeline: ``compile`` and ``generate`` compose the stages top to bottom.

    problem (validate) -> derive (exact) -> codegen (text) -> kernel (file, import, njit)

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> sg.grad((x2 - x1**2)**2, [x1, x2]).T
Matrix([[-4*x1*(-x1**2 + x2), -2*x1**2 + 2*x2]])
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import sympy as sp

from .arrays.build import array_source, compile_array
from .arrays.graph import Node
from .arrays.kernel import ArrayKernel
from .arrays.model import compile_model, is_model, model_source, with_outputs
from .arrays.model_kernel import ModelKernel
from .cache import cached_module, code_digest, write_atomic
from .codegen import CodegenOptions, header, module_source
from .derive import KinkPolicy, derive
from .kernel import Kernel
from .output import check_output
from .problem import ProblemError, problem
from .symbols import Data, as_expr, normalize_name
from .version import __version__

__all__ = ["compile", "generate", "grad", "hessian", "jacobian"]

#: The code that turns a scalar problem into module text (its digest is part of the cache key).
# the modules that write a scalar module (the cache key hashes their import closure)
_WRITERS = ("codegen", "derive", "problem")


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
    refused (SymPy would evaluate it); parse text with :func:`symgrad.exprparse.parse_loss`.

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


def _source(loss, params, policy, regenerate: str) -> tuple:
    prob = problem(loss, params)
    der = derive(prob, policy)
    return prob, module_source(der, CodegenOptions(regenerate=regenerate, version=__version__))


def compile(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
            parallel: bool | None = None, dtype: str | None = None,
            outputs: dict | None = None) -> Kernel | ArrayKernel | ModelKernel:
    """Compile a loss (a SymPy expression or a Python function of its parameters) to a Kernel.

    The module is kept in the cache directory (see :mod:`symgrad.cache`) under a key of
    everything that shapes it, so the same loss in another process neither differentiates nor
    generates again and reuses Numba's on-disk machine code. ``parallel=None`` uses the
    ``prange`` variant above ``kernel.PARALLEL_THRESHOLD`` samples; True/False force it. A
    loss written on arrays (``sg.params``/``sg.data`` with ``shape=``) gives an
    :class:`ArrayKernel`; ``dtype="float32"`` computes it in float32 throughout (float64 is
    the default); ``parallel=True`` runs its loops on Numba's threads (the same result for any
    number of them), ``None`` and ``False`` serially.

    An expression that keeps the sample axis (logits, a fitted curve ``a*exp(-b*t) + c``) is a
    model: it compiles to a :class:`~symgrad.arrays.model_kernel.ModelKernel` whose call gives
    one output per sample. ``outputs={"proba": sg.softmax(logits)}`` compiles models next to
    the loss, packed like its ``x``: ``f.outputs["proba"](x, X=...)``.

    >>> import symgrad as sg
    >>> def my_loss(x1, x2):
    ...     return (x2 - x1**2)**2 + (1 - x1)**2
    >>> f = sg.compile(my_loss)
    >>> f.params, f.value_and_grad([2.0, 2.0])[1].tolist()
    (('x1', 'x2'), [18.0, -4.0])
    """
    if outputs is not None:
        f = compile(loss, params, policy=policy, parallel=parallel, dtype=dtype)
        return with_outputs(f, outputs, policy=policy, dtype=dtype or "float64")
    if is_model(loss):
        if parallel is not None:
            raise ValueError("parallel= applies to scalar losses; models use BLAS and one loop "
                             "per node (no prange variant yet)")
        return compile_model(loss, params, policy=policy, dtype=dtype or "float64")
    if isinstance(loss, Node):
        return compile_array(loss, params, policy=policy, dtype=dtype or "float64",
                             parallel=parallel)
    if dtype not in (None, "float64"):
        raise ValueError("dtype= applies to array losses (sg.params/sg.data with shape=); "
                         "scalar losses compute in float64")
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
    parts = [_canon(prob), _canon(policy), _canon(opts), code_digest(*_WRITERS)]
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
    regenerate = regenerate or f"symgrad.generate(loss, {str(path.as_posix())!r})"
    if is_model(loss):
        _, src = model_source(loss, params, policy, regenerate)
    elif isinstance(loss, Node):
        _, src = array_source(loss, params, policy, regenerate)
    else:
        _, src = _source(loss, params, policy, regenerate)
    try:
        write_atomic(path, src)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
