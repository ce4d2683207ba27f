"""The module skeleton every generator shares (symgrad/codegen/skeleton.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.skeleton import CHUNK, CodegenOptions, fastmath_literal, hessian_fn, jit

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys
import symgrad as sg
from symgrad.backend.numba import CodegenOptions, module_source
from symgrad.ad.derive import derive
from symgrad.ir.problem import problem
a, b = sg.params("a b"); t = sg.data("t")
opts = CodegenOptions(fastmath=("nnan", "reassoc", "contract", "arcp"))
sys.stdout.write(module_source(derive(problem(sg.mean((a * t - b) ** 2))), opts))
"""


def test_fastmath_flags_print_the_same_bytes_in_every_process():
    """Non-default fastmath flags were printed as a set's repr, whose order follows the string
    hash seed: the same loss gave different bytes (and content hashes) in two processes."""
    texts = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        texts.add(subprocess.run([sys.executable, "-c", _SCRIPT], env=env, check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout)
    assert len(texts) == 1
    assert "_FASTMATH = {'nnan', 'reassoc', 'contract', 'arcp'}" in texts.pop()


def test_fastmath_literal():
    assert fastmath_literal(CodegenOptions()) == "{'reassoc', 'contract'}"
    assert fastmath_literal(CodegenOptions(fastmath=())) == "False"
    assert fastmath_literal(CodegenOptions(fastmath=("contract", "contract"))) == "{'contract'}"


def test_one_decorator_spelling_and_chunk_constant():
    assert jit() == "@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)"
    assert jit(fastmath=True, parallel=True) == ("@numba.njit(cache=True, error_model='numpy', "
                                                 "no_cfunc_wrapper=True, fastmath=_FASTMATH, "
                                                 "parallel=True)")
    a, b = sg.params("a b")
    t = sg.data("t")
    from symgrad.ad.derive import derive
    from symgrad.backend.numba import module_source
    from symgrad.backend.numba.residual_module import residual_source
    from symgrad.ir.problem import problem
    from symgrad.ir.residual_problem import residual_problem
    scalar = module_source(derive(problem(sg.mean((a * t - b) ** 2))))
    resid = residual_source(residual_problem(a * t - b))
    for text in (scalar, resid):
        assert f"nc = min(max(N // {CHUNK}, 1), 64)" in text
        assert "@numba.njit(cache=True, fastmath" not in text
        # no C-callable twin for any function: each costs milliseconds of LLVM work to build
        decorators = [ln for ln in text.splitlines() if ln.lstrip().startswith("@numba.njit")]
        assert decorators and all("no_cfunc_wrapper=True" in d for d in decorators)


def test_hessian_text_is_shared():
    fixed = hessian_fn(2, "x, H", "hvp(x, {e}, {col})")
    sized = hessian_fn(None, "x, H, dims", "hvp(x, {e}, {col}, dims)")
    for text in (fixed, sized):
        assert "if _overlap(H, x):" in text and "m = 0.5 * (H[j, k] + H[k, j])" in text
    assert "hvp(x, e, H[j])" in fixed and "hvp(x, e, H[j], dims)" in sized
    assert "H must have shape (2, 2)" in fixed and "nn = x.shape[0]" in sized


@pytest.fixture(scope="module")
def array_module(tmp_path_factory):
    from symgrad.backend.numba.array_module import array_module_source
    from symgrad.ir.array_problem import array_problem
    from symgrad.runtime.scalar import load_module

    w = sg.params("w", shape=(3,))
    X = sg.data("X", shape=(3,))
    path = tmp_path_factory.mktemp("skeleton") / "array_hessian_overlap.py"
    path.write_text(array_module_source(array_problem(sg.mean((X @ w) ** 2))))
    return load_module(path, "array_hessian_overlap_test")


# -m slow (an array Hessian: 6 s of compile, cold; overlap refusals stay quick in
# test_kernel_interface)
@pytest.mark.slow
def test_array_module_hessian_refuses_an_H_overlapping_x(array_module):
    """The array module's hessian wrapper wrote H column by column over x when they shared
    memory (the scalar one refused); it is now the shared one, which refuses."""
    rng = np.random.default_rng(0)
    Xd = rng.normal(size=(5, 3))
    dims = np.array([3, 3], dtype=np.int64)  # the sizes D0, D1 named in the header: 3 and 3
    x = np.array([0.5, -1.0, 2.0])
    H = np.empty((3, 3))
    got = array_module.hessian(x, H, dims, Xd, None)
    np.testing.assert_allclose(got, 2 * Xd.T @ Xd / 5, rtol=1e-12, atol=1e-12)
    buf = np.zeros(9)
    buf[:3] = x
    with pytest.raises(ValueError, match="overlaps x"):
        array_module.hessian(buf[:3], buf.reshape(3, 3), dims, Xd, None)


@pytest.mark.slow  # -m slow (an array Hessian: 6 s of compile, cold)
def test_array_module_hessian_core_and_batch_wrapper(array_module):
    """``_hessian`` (the core a kernel can call: no idx) stacks the HVP columns; ``hessian``
    with idx gathers the batch once, as the other wrappers do."""
    rng = np.random.default_rng(1)
    Xd = rng.normal(size=(6, 3))
    dims = np.array([3, 3], dtype=np.int64)
    x = np.array([0.1, 0.2, -0.3])
    core = array_module._hessian(x, np.empty((3, 3)), dims, Xd)
    np.testing.assert_allclose(core, 2 * Xd.T @ Xd / 6, rtol=1e-12, atol=1e-12)
    idx = np.array([4, 1, 1], dtype=np.int64)
    batch = array_module.hessian(x, np.empty((3, 3)), dims, Xd, idx)
    np.testing.assert_allclose(batch, 2 * Xd[idx].T @ Xd[idx] / 3, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        array_module.hessian(x, np.empty((3, 3)), dims, Xd, np.array([6], dtype=np.int64))


def test_overlap_helper_follows_the_memory_spans():
    """``_overlap`` (each span computed in place since the ``_span`` helper went) is True exactly
    when the spans [lowest, highest + itemsize) of two arrays meet, for any strides (so interleaved
    views count as overlapping, conservatively, as np.may_share_memory)."""
    from symgrad.backend.numba.helpers import helpers_for

    ns: dict = {}
    text = helpers_for("_overlap(a, b)").replace("cache=True", "cache=False")  # no file
    exec(compile("import numba\nimport numpy as np\n" + text, "<helpers>", "exec"), ns)
    ov = ns["_overlap"].py_func  # the same text, run by Python (NumPy's ctypes and strides)
    buf = np.arange(24.0)
    M = buf.reshape(4, 6)
    cases = [(buf[:12], buf[12:], False), (buf[:13], buf[12:], True),
             (buf[11::-1], buf[12:], False), (buf[12::-1], buf[12:], True),
             (M[:2].T, M[2:], False), (M[:, :3], M[3, 2:], True), (M[:, 3:], M[1, :3], True),
             (buf[:0], buf, False), (buf[::5], np.zeros(3), False)]
    for a, b, want in cases:
        assert ov(a, b) is want and ov(b, a) is want, (a, b)
        assert ns["_overlap"](a, b) == want  # compiled: the same answer
