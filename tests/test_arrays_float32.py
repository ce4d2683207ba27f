"""float32 array kernels: sums over the samples keep float32 accuracy, and a datum beyond
float32's range is named instead of turning into inf."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg

pytestmark = pytest.mark.usefixtures("array_code")  # the float32 array code (x and g float32)


@pytest.fixture(scope="module")
def f32():
    b = sg.params("b", shape=(2,))
    X = sg.data("X", shape=(2,))
    return sg.compile(sg.mean(sg.sum((X + b) ** 2, axis=0)), dtype="float32")


def test_float32_sums_over_samples_accumulate_in_float64(f32):
    """A float32 accumulator over 2e6 samples lost 2 digits of the gradient (the sum over
    samples keeping an axis) and 1 of the mean; summed in float64 and rounded once, both are
    within a few float32 roundings of the exact mean of the same float32 data."""
    rng = np.random.default_rng(0)
    n = 2_000_000
    X = (1 + 0.01 * rng.standard_normal((n, 2))).astype(np.float32)
    x = np.array([0.25, -0.5], np.float32)
    value, g = f32.value_and_grad(x, X=X)
    assert isinstance(value, float) and g.dtype == np.float32
    Z = X.astype(np.float64) + x.astype(np.float64)
    want_value, want_g = (Z ** 2).sum(axis=1).mean(), 2 * Z.mean(axis=0)
    eps = np.finfo(np.float32).eps
    assert abs(value - want_value) <= 4 * eps * want_value
    np.testing.assert_allclose(g, want_g, rtol=4 * eps)
    assert abs(f32.value(x, X=X) - want_value) <= 4 * eps * want_value


def test_float32_kernel_names_a_datum_that_overflows_on_the_cast(f32):
    X = np.ones((6, 2))
    X[3, 1] = 4e39  # finite in float64, inf in float32
    x = np.zeros(2, np.float32)
    for call in (lambda: f32.value(x, X=X), lambda: f32.value_and_grad(x, X=X),
                 lambda: f32.data_args({"X": X}), lambda: f32.bind(X=X)):
        with pytest.raises(ValueError, match=r"data array 'X' has 4e\+39 at row 3, entry 1.*"
                                             r"float32"):
            call()
    # a batch that does not read row 3 is fine; one that does is refused
    assert np.isfinite(f32.value(x, X=X, batch=[0, 1, 2]))
    with pytest.raises(ValueError, match="row 3"):
        f32.value(x, X=X, batch=[2, 3])
    # float64 data within float32's range, and the largest float32, pass
    X[3, 1] = float(np.finfo(np.float32).max)
    f32.data_args({"X": X})


@pytest.mark.parametrize("parallel", [False, True])
def test_float32_gather_adjoints_accumulate_in_float64(parallel):
    """The gradient and HVP of ``U[k]`` (a scatter over the samples) were added straight into
    the float32 buffer: 4e-3 off at N = 4e6 serially, and the threaded result differed from
    the serial one by as much. Now summed in float64 and rounded once, on both paths."""
    U = sg.params("U", shape=(3,))
    k, y = sg.data("k", dtype=int), sg.data("y")
    f = sg.compile(sg.mean((U[k] - y) ** 2), dtype="float32", parallel=parallel)
    rng = np.random.default_rng(0)
    n = 2_000_000
    kd = rng.integers(0, 3, n)
    yd = (1 + 0.01 * rng.standard_normal(n)).astype(np.float32)
    x = np.array([0.5, 0.25, 0.75], np.float32)
    r = x[kd].astype(np.float64) - yd  # the float32 terms, exactly
    want_g = 2 * np.bincount(kd, weights=r, minlength=3) / n
    want_h = 2 * np.bincount(kd, minlength=3) / n
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(f.grad(x, k=kd, y=yd), want_g, rtol=4 * eps)
    np.testing.assert_allclose(f.hvp(x, np.ones(3, np.float32), k=kd, y=yd), want_h,
                               rtol=4 * eps)


def test_float32_log_softmax_is_not_rounded_at_the_logits_magnitude():
    """``z - logsumexp(z)`` subtracted a logsumexp rounded to float32 at the magnitude of z:
    softmax probabilities 1.3e-5 off (summing to 1.0000131) at logits 999..1001, exactly
    representable in float32. The logsumexp is now float64 in float32 kernels."""
    W, X, C = sg.params("W", shape=(3, 1)), sg.data("X", shape=(1,)), sg.data("C", shape=(3,))
    x = np.array([1000.0, 1001.0, 999.0])
    e = np.exp(x - x.max())
    want = e / e.sum()
    p = sg.compile(sg.softmax(W @ X), dtype="float32")(x, X=np.ones((4, 1)))
    np.testing.assert_allclose(p, np.tile(want, (4, 1)), rtol=4 * np.finfo(np.float32).eps)
    loss = sg.mean(-sg.sum(C * sg.log_softmax(W @ X), axis=0))
    f = sg.compile(loss, dtype="float32", fuse=False)
    value, g = f.value_and_grad(x.astype(np.float32), X=np.ones((4, 1), np.float32),
                                C=np.tile(np.eye(3, dtype=np.float32)[1], (4, 1)))
    assert value == pytest.approx(-np.log(want[1]), rel=4 * float(np.finfo(np.float32).eps))
    np.testing.assert_allclose(g, want - np.eye(3)[1], rtol=4 * np.finfo(np.float32).eps)
