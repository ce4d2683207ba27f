"""A model: an expression that keeps the sample axis (logits, probabilities, a fitted curve).

Where a loss reduces the samples to one number, a model gives one output per sample, of
shape ``(N, *shape)``. It is compiled like a loss on the array path (the same emitter, BLAS
lowering and cache) into a module that evaluates the outputs and their tangents along a
parameter direction; :class:`~symgrad.arrays.model_kernel.ModelKernel` runs it.

``x`` packs the parameters exactly as a loss kernel does, so a model compiled with the loss's
parameters (``sg.compile(loss, outputs={...})``) takes the trained ``x`` as it is: parameters
the model does not read keep their place in ``x``.

>>> import symgrad as sg
>>> a, b = sg.params("a b"); t = sg.data("t")
>>> p = model_problem(a * sg.exp(-b * t))
>>> p.param_names, [d.name for d in p.data], p.output.shape
(('a', 'b'), ['t'], ('N',))
"""

from __future__ import annotations

import hashlib
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .. import __version__
from ..cache import cached_module, code_digest
from ..codegen import CodegenOptions
from ..derive import KinkPolicy
from ..problem import ProblemError, _check_functions
from .autodiff import topo
from .build import canonical
from .graph import Dim, Leaf, Map, N, Node
from .ops import lift
from .problem import _order

__all__ = ["ModelProblem", "compile_model", "is_model", "model_problem", "model_source"]


@dataclass(frozen=True)
class ModelProblem:
    """A per-sample output with its parameters (packing order), data arrays and sizes."""

    output: Node
    params: tuple[Leaf, ...]
    data: tuple[Leaf, ...]
    dims: tuple[Dim, ...]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def size(self) -> int:
        """The length of ``x``."""
        return sum(math.prod(p.shape) for p in self.params)

    @property
    def shape(self) -> tuple[int, ...]:
        """The output's shape per sample."""
        return tuple(int(s) for s in self.output.shape[1:])

    def offsets(self) -> list[int]:
        """Where each parameter starts in ``x``."""
        out, o = [], 0
        for p in self.params:
            out.append(o)
            o += math.prod(p.shape)
        return out


def is_model(expr) -> bool:
    """Whether ``expr`` keeps the sample axis: an array with axis ``N``, or a SymPy expression
    that reads a data column outside every reduction (``a*exp(-b*t) + c``)."""
    if isinstance(expr, Node):
        return expr.per_sample
    if not isinstance(expr, sp.Basic) or isinstance(expr, sp.MatrixBase):
        return False
    from ..symbols import Data, IndexedSum, Mean, Sum

    if expr.has(IndexedSum, sp.Indexed):
        return False
    outer = expr.xreplace({r: sp.Dummy() for r in expr.atoms(Mean, Sum)})
    stray = [s for s in outer.free_symbols if isinstance(s, Data)]
    return bool(stray) and all(s.width is None for s in stray)  # components: the scalar path


def model_problem(expr, params: Sequence | None = None) -> ModelProblem:
    """Validate a model: an array that keeps the sample axis (axis 0), names used once.

    ``params`` fixes the packing order; given as :class:`Leaf` arrays (a loss's parameters), it
    may hold parameters the model does not read (they keep their place in ``x``)."""
    try:
        node = lift(expr)
    except TypeError as exc:
        raise ProblemError(str(exc)) from None
    if not isinstance(node, Node) or not node.per_sample:
        raise ProblemError("a model must keep the sample axis (one output per sample): "
                           f"{expr} reads no per-sample data array outside a reduction")
    order = topo([node])
    for n in order:
        if isinstance(n, Map):
            _check_functions(n.expr)
    leaves = [n for n in order if isinstance(n, Leaf)]
    by_name: dict[str, Leaf] = {}
    for leaf in leaves:
        other = by_name.setdefault(leaf.name, leaf)
        if other is not leaf:
            raise ProblemError(f"the name '{leaf.name}' is used for two different arrays "
                               f"({other!r} as {other.role} and {leaf!r} as {leaf.role}): "
                               "use one name per array")
    found = [q for q in leaves if q.role == "param"]
    data = tuple(sorted((q for q in leaves if q.role in ("data", "index")), key=lambda q: q.name))
    if params is not None and all(isinstance(p, Leaf) for p in params):
        ordered = _with_unused(found, list(params))
    else:
        ordered = _order(found, params)
    dims: dict[tuple, Dim] = {}
    for n in [*order, *ordered]:  # every parameter's axes: x's layout needs them all
        for s in n.shape:
            if s != N and not s.trim:
                dims.setdefault(s.key, s)
    return ModelProblem(node, tuple(ordered), data, tuple(dims.values()))


def _with_unused(found: list[Leaf], params: list[Leaf]) -> list[Leaf]:
    """A loss's parameters as the model's packing: every parameter the model reads is one of
    them, with the same shape."""
    known = {p.name: p for p in params}
    for q in found:
        if q.name not in known:
            raise ProblemError(f"the output reads parameter '{q.name}', which the loss does not: "
                               "an output shares the loss's parameters (x)")
        if known[q.name] is not q:
            raise ProblemError(f"the output's '{q.name}' is {q!r} but the loss's is "
                               f"{known[q.name]!r}: build both from one declaration")
    return params


def _key(prob: ModelProblem, policy: KinkPolicy, opts: CodegenOptions, real: str) -> str:
    text = canonical(types.SimpleNamespace(loss=prob.output, param_names=prob.param_names))
    layout = repr([(p.name, len(p.shape)) for p in prob.params])  # ranks: no sizes
    parts = ["model", text, layout, repr(policy), repr(opts), real,
             code_digest("arrays", "codegen", "printer.py", "derive.py", "functions.py")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def compile_model(expr, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64"):
    """Compile a model into a :class:`~symgrad.arrays.model_kernel.ModelKernel`."""
    from .model_codegen import model_header, model_module_source
    from .model_kernel import ModelKernel

    prob = model_problem(expr, params)
    policy, real = policy or KinkPolicy(), str(np.dtype(dtype))
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {real!r}")
    opts = CodegenOptions(regenerate="symgrad.compile(model)", version=__version__)
    path, src, mod = cached_module(
        "m" + _key(prob, policy, opts, real),
        lambda digest: model_header(prob, policy, opts, digest),
        lambda: model_module_source(prob, policy, opts, real))
    return ModelKernel(prob, src, path, mod, policy, real)


def model_source(expr, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64") -> tuple[ModelProblem, str]:
    """``(problem, module text)`` for a model (what :func:`symgrad.generate` writes)."""
    from .model_codegen import model_module_source

    prob = model_problem(expr, params)
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    return prob, model_module_source(prob, policy, opts, str(np.dtype(dtype)))


def with_outputs(kernel, outputs, *, policy: KinkPolicy | None = None, dtype: str = "float64"):
    """``kernel`` with ``kernel.outputs``: one compiled model per name, packed like its ``x``
    (parameters an output does not read keep their place)."""
    if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
        raise TypeError("outputs= takes a dict of name -> per-sample expression, e.g. "
                        "outputs={'proba': sg.softmax(logits)}")
    if getattr(kernel, "vectors", ()):
        raise ProblemError("outputs= needs a loss without indexed vectors (x's length would "
                           "depend on the vectors' length)")
    from .kernel import ArrayKernel

    params = (list(kernel.problem.params) if isinstance(kernel, ArrayKernel) else
              [Leaf("param", name, ()) for name in kernel.params])
    compiled = {}
    for name, expr in outputs.items():
        if not is_model(expr):
            raise ProblemError(f"output '{name}' must keep the sample axis (one value per "
                               "sample): it reads no per-sample data outside a reduction")
        try:
            compiled[name] = compile_model(expr, params, policy=policy, dtype=dtype)
        except ProblemError as exc:
            raise ProblemError(f"output '{name}': {exc}") from None
    kernel.outputs = compiled
    return kernel
