"""The generated modules' ``_gemm``: every operand layout read in place through BLAS's transpose
flags (gemv for a vector side), never a copy of a data operand."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.gemm import GEMM_HELPER
from symgrad.lang import losses


def _helper() -> dict:
    """The namespace of a fresh, uncached copy of the helper."""
    ns = {"numba": numba, "np": np}
    exec(compile(GEMM_HELPER.replace("cache=True", "cache=False"), "<gemm>", "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def gemm():
    return _helper()["_gemm"]


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """``a`` as C, Fortran, row-strided, column-strided and fully strided views."""
    r, c = a.shape
    rows = np.zeros((r, c + 3), a.dtype)
    rows[:, 1:c + 1] = a
    cols = np.zeros((r + 2, c), a.dtype, order="F")
    cols[2:, :] = a
    both = np.zeros((2 * r, 2 * c), a.dtype)
    both[::2, ::2] = a
    return {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a), "rows": rows[:, 1:c + 1],
            "cols": cols[2:, :], "strided": both[::2, ::2], "T": np.ascontiguousarray(a.T).T}


SHAPES = [(4, 3, 5), (5, 7, 1), (1, 7, 5), (1, 6, 1), (1, 1, 1), (3, 1, 4), (0, 3, 2),
          (3, 0, 2), (3, 2, 0)]


# float64 stays quick; float32 and complex128 (the layouts compiled again per dtype, about 2 s
# each cold on 2 cores) run in the slow set. The quick float32 kernels (test_arrays_api) and the
# complex-step checks (test_arrays) still call _gemm in those dtypes.
@pytest.mark.parametrize("dtype", [np.float64, pytest.param(np.float32, marks=pytest.mark.slow),
                                   pytest.param(np.complex128, marks=pytest.mark.slow)])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_gemm_matches_numpy_for_every_layout(gemm, dtype, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    if np.iscomplexobj(a):
        a = a + 1j * rng.standard_normal((m, k))
        b = b - 2j * rng.standard_normal((k, n))
    want = a.astype(np.complex128) @ b.astype(np.complex128)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for (la, av), (lb, bv) in itertools.product(_layouts(a).items(), _layouts(b).items()):
        out = np.full((m, n), np.nan, dtype)
        gemm(av, bv, out)
        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol * 10,
                                   err_msg=f"a {la}, b {lb}")
        np.testing.assert_array_equal(av, a)  # operands untouched
        np.testing.assert_array_equal(bv, b)


@pytest.fixture(scope="module")
def logistic():
    w = sg.params("w", shape=(6,))
    X, y = sg.data("X", shape=(6,)), sg.data("y")
    return sg.compile(losses.binary_cross_entropy(X @ w + 0.5, y), fuse=False)


def _allocations(call) -> int:
    from numba.core.runtime import _nrt_python, rtsys

    call()  # compiled for these types
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats().alloc
        call()
        return rtsys.get_allocation_stats().alloc - before
    finally:
        _nrt_python.memsys_disable_stats()


def test_products_never_copy_their_data_operand(logistic):
    """``X @ w`` forward and ``X.T @ r`` backward read X where it lies, in C or Fortran order or
    as a view of a wider array (rows or columns apart): one call allocates what it does with
    C-ordered data, not a copy of X per product."""
    rng = np.random.default_rng(1)
    Xd = rng.standard_normal((300, 6))
    yd = (rng.random(300) < 0.5) * 1.0
    x, g = rng.standard_normal(6), np.empty(6)
    dims, Xc, yc = logistic.data_args({"X": Xd, "y": yd})
    want = logistic.jit.value_and_grad(x, g, dims, Xc, yc), g.copy()
    base = _allocations(lambda: logistic.jit.value_and_grad(x, g, dims, Xc, yc))
    views = _layouts(Xd)
    del views["strided"]  # no unit-stride axis: BLAS cannot read it (the only copy)
    for name, Xv in views.items():
        n = _allocations(lambda Xv=Xv: logistic.jit.value_and_grad(x, g, dims, Xv, yc))
        assert n == base, f"X {name}: {n} allocations against {base} with C-ordered data"
        assert logistic.jit.value_and_grad(x, g, dims, Xv, yc) == pytest.approx(want[0],
                                                                                   rel=1e-14)
        np.testing.assert_allclose(g, want[1], rtol=1e-13, atol=1e-15)


def test_generated_products_use_no_copying_wrapper():
    """The module text carries no path that copies an operand to make it contiguous."""
    assert "make_contiguous" not in GEMM_HELPER


def test_one_compiled_product_serves_every_layout():
    """The products compile once per dtype, not once per operand layout: a network's gradient
    multiplies C by transposed, C by C and transposed by C operands, and each layout compiled
    anew cost about 0.25 s of the cold build of a 784-512-10 MLP (0.5 s of its 3 s); the
    module-level check is in test_cold_build.py."""
    ns = _helper()
    a = np.random.default_rng(0).standard_normal((4, 3))
    for av, bv in itertools.product(_layouts(a).values(), _layouts(a.T.copy()).values()):
        ns["_gemm"](av, bv, np.empty((4, 4)))
    assert len(ns["_gemm_any"].signatures) == 1
