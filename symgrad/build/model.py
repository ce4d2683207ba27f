"""A model: an expression that keeps the sample axis (logits, probabilities, a fitted curve).

Where a loss reduces the samples to one number, a model gives one output per sample, of
shape ``(N, *shape)``. It is compiled like a loss on the array path (the same emitter, BLAS
lowering and cache) into a module that evaluates the outputs and their tangents along a
parameter direction; :class:`~symgrad.runtime.model.ModelKernel` runs it.

``x`` packs the parameters exactly as a loss kernel does, so a model compiled with the loss's
parameters (``sg.compile(loss, outputs={...})``) takes the trained ``x`` as it is: parameters
the model does not read keep their place in ``x``.

>>> import symgrad as sg
>>> a, b = sg.params("a b"); t = sg.data("t")
>>> model = compile_model(a * sg.exp(-b * t))
>>> model([2.0, 0.0], t=[0.0, 1.0]).tolist()
[2.0, 2.0]
"""
from __future__ import annotations

import types
from collections.abc import Sequence

import numpy as np

from ..ad.derive import KinkPolicy
from ..backend.numba import CodegenOptions
from ..backend.numba.model_module import model_header, model_module_source
from ..ir.graph import Leaf
from ..ir.model_problem import ModelProblem, is_model, model_problem
from ..ir.problem import ProblemError
from ..runtime.model import ModelKernel
from ..version import __version__
from .array import canonical
from .key import cache_key
from .shared import cached_with_shared

__all__ = ["ModelProblem", "compile_model", "is_model", "model_problem", "model_source"]


def _key(prob: ModelProblem, policy: KinkPolicy, opts: CodegenOptions, real: str) -> str:
    text = canonical(types.SimpleNamespace(loss=prob.output, param_names=prob.param_names))
    layout = repr([(p.name, len(p.shape)) for p in prob.params])  # ranks: no sizes
    return cache_key("model", f"{text}\n{layout}", policy, opts, real,
                     ("backend.numba.model_module", "ir.array_problem"))


def compile_model(expr, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64"):
    """Compile a model into a :class:`~symgrad.runtime.model.ModelKernel`."""

    prob = model_problem(expr, params)
    policy, real = policy or KinkPolicy(), str(np.dtype(dtype))
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {real!r}")
    opts = CodegenOptions(regenerate="symgrad.compile(model)", version=__version__)
    path, src, mod = cached_with_shared(
        _key(prob, policy, opts, real),
        lambda digest: model_header(prob, policy, opts, digest),
        lambda: model_module_source(prob, policy, opts, real))
    return ModelKernel(prob, src, path, mod, policy, real)


def model_source(expr, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64") -> tuple[ModelProblem, str]:
    """``(problem, module text)`` for a model (what :func:`symgrad.generate` writes)."""

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
    # a fused array loss is kind "scalar" but keeps its parameters' shapes (a shape-() leaf
    # per name refused its outputs: "the output's 'W' is W[3, 4] but the loss's is W[]")
    params = (list(kernel.problem.params) if kernel.kind == "array" else
              [Leaf("param", name, tuple(kernel.shapes[name])) for name in kernel.params])
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
