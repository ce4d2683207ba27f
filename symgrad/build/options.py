"""The options every build entry point takes, and which kinds can honour which.

``sg.compile``, ``sg.compile_residuals`` and ``sg.generate`` take the same keywords
(``kind``, ``policy``, ``parallel``, ``dtype``). What each kind of module can do is declared
here, in one table; an option a kind cannot honour yet is refused with why and what to do
instead, never ignored.

>>> check_options("array", dtype="float32")
(KinkPolicy(relu=0.0, abs=0.0, tie=0.5), 'float32')
>>> check_options("array", dtype="float16")
Traceback (most recent call last):
...
ValueError: dtype must be 'float64' or 'float32', got 'float16'

Every kind takes ``dtype="float32"``, where the module has float32 work to do; the build
refuses it otherwise, with why. A scalar loss takes it when it sums over data samples (its
per-sample arithmetic in float32, float64 totals; index sums next to the sample loop compute in
float64: :func:`symgrad.backend.numba.scalar.check_dtype`); residuals when they have data
columns (each sample's residuals and Jacobian row in float32, every sum over samples in
float64: :func:`symgrad.backend.numba.residual_module.check_dtype`); a sum of index sums and
array terms when the array terms fuse into its one module
(:func:`symgrad.build.mixed.compile_sum` says what to do when they do not).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..ad.derive import KinkPolicy
from ..ir.graph import Node
from ..ir.model_problem import is_model
from ..ir.problem import ProblemError
from ..lang.mixed import MixedSum

__all__ = ["DTYPES", "FUSE", "KINDS", "PARALLEL", "check_options", "kind_of"]

#: The kinds of module (the ``kind`` attribute of the kernel each compiles to).
KINDS = ("scalar", "array", "model", "residual", "sum")
#: The dtypes each kind can compute in (the first is the default).
DTYPES = {"scalar": ("float64", "float32"), "array": ("float64", "float32"),
          "model": ("float64", "float32"), "residual": ("float64", "float32"),
          "sum": ("float64", "float32")}
#: The ``parallel=`` values each kind honours (None: the kernel decides).
PARALLEL = {"scalar": (None, True, False), "array": (None, True, False), "model": (None,),
            "residual": (None, True, False), "sum": (None, True, False)}
#: The kinds whose lowering ``fuse=`` chooses (one pass over the samples, or array code).
FUSE = ("array", "residual", "sum")
_WHAT = {"scalar": "a scalar loss", "array": "an array loss", "model": "a model",
         "residual": "a residual kernel", "sum": "a sum of index sums and array terms"}
#: Why a kind refuses a parallel= value, and what to do instead.
_NO_PARALLEL = {
    "model": "models run BLAS and one loop per node, with no prange variant yet: set the BLAS "
             "threads with sg.set_blas_threads(n)",
}


def kind_of(loss, kind: str | None = None) -> str:
    """The kind of module ``loss`` builds: detected (a model keeps the sample axis, an array
    loss is a graph of arrays, anything else is a scalar loss), or ``kind`` when it is given
    ("residual" must be asked for: a residual and a model look alike)."""
    if kind == "residuals":
        kind = "residual"
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))} (or None to "
                         f"detect it), got {kind!r}")
    if kind == "residual":
        return kind
    found = ("sum" if isinstance(loss, MixedSum) else "model" if is_model(loss) else
             "array" if isinstance(loss, Node) else "scalar")
    if kind is None and (isinstance(loss, list | tuple | sp.MatrixBase)):
        raise ProblemError("a loss is one scalar, not a list or Matrix: to compile residuals "
                           "(one entry per residual) pass kind='residual', e.g. "
                           "sg.compile(resid, kind='residual'); for the exact derivatives of "
                           "several expressions use sg.jacobian(exprs, wrt)")
    if kind is not None and kind != found:
        raise ProblemError(f"kind={kind!r}, but this is {_WHAT[found]} (kind {found!r}): "
                           "leave kind unset to detect it")
    return found


def check_options(kind: str, *, policy: KinkPolicy | None = None, parallel: bool | None = None,
                  dtype=None, fuse: bool | None = None) -> tuple[KinkPolicy, str]:
    """``(policy, dtype name)`` for a module of ``kind``; raise if it cannot honour an option."""
    if fuse is not None and not isinstance(fuse, bool | np.bool_):
        raise TypeError(f"fuse must be None, True or False, got {fuse!r}")
    if fuse is not None and kind not in FUSE and not (fuse and kind == "scalar"):
        raise ValueError(f"fuse= chooses how an array loss or array residuals run (one pass "
                         f"over the samples, or array code); {_WHAT[kind]} has one lowering"
                         f"{' (one pass over the samples)' if kind == 'scalar' else ''}: "
                         "leave fuse unset")
    if policy is None:
        policy = KinkPolicy()
    elif not isinstance(policy, KinkPolicy):
        raise TypeError(f"policy must be a sg.KinkPolicy (e.g. sg.KinkPolicy(relu=0.5)), got "
                        f"{type(policy).__name__}")
    if parallel is not None and not isinstance(parallel, bool | np.bool_):
        raise TypeError(f"parallel must be None, True or False, got {parallel!r}")
    if parallel is not None and bool(parallel) not in PARALLEL[kind]:
        raise ValueError(f"parallel={bool(parallel)} is not available for {_WHAT[kind]}: "
                         f"{_NO_PARALLEL[kind]}; leave parallel unset")
    allowed = DTYPES[kind]
    if dtype is None:
        return policy, allowed[0]
    try:
        real = np.dtype(dtype).name
    except TypeError:
        real = None
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if real not in allowed:
        raise ValueError(f"dtype={real!r}: {_WHAT[kind]} computes in "
                         f"{' or '.join(allowed)} only; leave dtype unset")
    return policy, real
