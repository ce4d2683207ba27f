"""Least squares on array residuals: ``sg.least_squares(W @ X + b - Y, ...)`` (issue 22).

The residual keeps the sample axis (m outputs per sample, sample-major); the fused JᵀJ pass
runs block by block over the samples. References: NumPy's lstsq (linear), SciPy's
least_squares on a NumPy residual and Jacobian (nonlinear, bounds, robust loss).
"""

import warnings

import numpy as np
import pytest
from scipy.optimize import least_squares as scipy_lsq

import symgrad as sg
from symgrad.errors import ProblemError

N, D, K = 300, 4, 3


def _symbols(d: int = D):
    """W (K, d), b (K,), X (d,) and Y (K,) per sample."""
    return (sg.params("W", shape=(K, d)), sg.params("b", shape=(K,)),
            sg.data("X", shape=(d,)), sg.data("Y", shape=(K,)))


#: Both lowerings: the fused sample loop (the default for these small models) and the array one.
LOWERINGS = [pytest.param(True, id="fused"), pytest.param(False, id="array")]


@pytest.fixture(scope="module", params=LOWERINGS)
def linear(request):
    W, b, X, Y = _symbols()
    rng = np.random.default_rng(0)
    Xv = rng.standard_normal((N, D))
    Yv = Xv @ rng.standard_normal((D, K)) + rng.standard_normal(K) \
        + 0.1 * rng.standard_normal((N, K))
    kernel = sg.compile_residuals(W @ X + b - Y, fuse=request.param)
    assert kernel.fused is request.param
    return kernel, {"X": Xv, "Y": Yv}


def _lstsq(X, Y):
    """W (K, D) and b (K,) by NumPy's lstsq, packed as x = (W, b)."""
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]  # (D+1, K)
    return np.concatenate([coef[:D].T.ravel(), coef[D]])


def test_linear_multi_output_equals_lstsq(linear):
    kernel, data = linear
    assert kernel.m == K and kernel.n_params == K * D + K
    fit = sg.least_squares(kernel, np.zeros(K * D + K), data=data)
    ref = _lstsq(data["X"], data["Y"])
    assert fit.success
    np.testing.assert_allclose(fit.x, ref, rtol=0, atol=1e-9)
    assert fit.params[0] == "W[0, 0]" and fit.params[-1] == "b[2]"
    r = fit.fun.reshape(N, K)
    np.testing.assert_allclose(r, data["X"] @ ref[:K * D].reshape(K, D).T + ref[K * D:]
                               - data["Y"], atol=1e-12)


def test_expression_routes_and_methods_agree(linear):
    kernel, data = linear
    ref = _lstsq(data["X"], data["Y"])
    for method in ("lm", "precise", "gn"):
        fit = sg.least_squares(kernel, np.zeros(K * D + K), data=data, method=method)
        np.testing.assert_allclose(fit.x, ref, atol=1e-9, err_msg=method)
    # x0 by parameter name, in the parameters' shapes
    fit = sg.least_squares(kernel, {"W": np.zeros((K, D)), "b": np.zeros(K)}, data=data)
    np.testing.assert_allclose(fit.x, ref, atol=1e-9)
    # statistics: the covariance is sigma^2 (A^T A)^-1 per output, A = [X, 1]
    A = np.hstack([data["X"], np.ones((N, 1))])
    inv = np.linalg.inv(A.T @ A)
    s2 = 2 * fit.cost / (N * K - K * (D + 1))
    k = 1  # output 1: W[1, :], b[1]
    idx = [k * D + j for j in range(D)] + [K * D + k]
    np.testing.assert_allclose(fit.cov[np.ix_(idx, idx)], s2 * inv, rtol=1e-8)


def test_kernel_interface_against_materialised_jacobian(linear):
    kernel, data = linear
    rng = np.random.default_rng(1)
    x = rng.standard_normal(kernel.n_params)
    bound = kernel.bind(**data)
    M = N * K
    assert bound.n_residuals() == M == kernel.n_residuals(**data)
    J = kernel.jacobian(x, **data)
    r = kernel.residuals(x, **data)
    Wx, bx = x[:K * D].reshape(K, D), x[K * D:]
    np.testing.assert_allclose(r, (data["X"] @ Wx.T + bx - data["Y"]).ravel(), atol=1e-13)
    A = np.hstack([data["X"], np.ones((N, 1))])
    Jref = np.zeros((N, K, K * D + K))
    for k in range(K):
        Jref[:, k, k * D:(k + 1) * D] = data["X"]
        Jref[:, k, K * D + k] = 1.0
    np.testing.assert_allclose(J, Jref.reshape(M, -1), atol=1e-14)
    v, u = rng.standard_normal(kernel.n_params), rng.standard_normal(M)
    np.testing.assert_allclose(bound.jvp(x, v), J @ v, atol=1e-12)
    np.testing.assert_allclose(bound.vjp(x, u), J.T @ u, rtol=1e-12, atol=1e-11)
    a, c = rng.uniform(0.5, 2, M), rng.uniform(0.5, 2, M)
    JtJ, Jtr, rtr = bound.normal(x, jscale=a, rscale=c)
    np.testing.assert_allclose(JtJ, (a[:, None] * J).T @ (a[:, None] * J), rtol=1e-12)
    np.testing.assert_allclose(Jtr, (a[:, None] * J).T @ (c * r), rtol=1e-12, atol=1e-10)
    assert rtr == pytest.approx(float((c * r) @ (c * r)), rel=1e-12)
    Jr, rr = bound.rows(x, 10, 17)
    np.testing.assert_array_equal(Jr, J[10 * K:17 * K])
    np.testing.assert_array_equal(rr, r[10 * K:17 * K])
    assert A.shape[0] == N


def test_normal_blocks_do_not_change_the_sums(linear):
    """Blocks of 7 samples give the sums of one block (to rounding)."""
    kernel, data = linear
    if kernel.fused:  # blocks of the array lowering, against the fused sums
        kernel = sg.lsq.ArrayResiduals(kernel.model)
    x = np.random.default_rng(2).standard_normal(kernel.n_params)
    one = kernel.bind(**data).normal(x)
    small = sg.lsq.ArrayResiduals(kernel.model, block=7).bind(**data).normal(x)
    np.testing.assert_allclose(small[0], one[0], rtol=1e-13)
    np.testing.assert_allclose(small[1], one[1], rtol=1e-12, atol=1e-11)
    assert small[2] == pytest.approx(one[2], rel=1e-13)


@pytest.fixture(scope="module", params=LOWERINGS)
def tanh_layer(request):
    """y = tanh(X @ W.T + b), 2 inputs, 3 outputs per sample, noisy."""
    W, b, X, Y = _symbols(2)
    rng = np.random.default_rng(3)
    Xv = rng.standard_normal((200, 2))
    Wt, bt = np.array([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4]]), np.array([0.1, -0.2, 0.3])
    Yv = np.tanh(Xv @ Wt.T + bt) + 0.05 * rng.standard_normal((200, K))
    kernel = sg.compile_residuals(sg.tanh(W @ X + b) - Y, fuse=request.param)
    return kernel, {"X": Xv, "Y": Yv}


def _scipy_tanh(data, **kw):
    Xv, Yv = data["X"], data["Y"]

    def fun(x):
        W, b = x[:2 * K].reshape(K, 2), x[2 * K:]
        return (np.tanh(Xv @ W.T + b) - Yv).ravel()

    def jac(x):
        W, b = x[:2 * K].reshape(K, 2), x[2 * K:]
        d = 1 - np.tanh(Xv @ W.T + b)**2  # (n, K)
        J = np.zeros((len(Xv), K, 3 * K))
        for k in range(K):
            J[:, k, 2 * k:2 * k + 2] = d[:, k:k + 1] * Xv
            J[:, k, 2 * K + k] = d[:, k]
        return J.reshape(-1, 3 * K)

    return scipy_lsq(fun, np.full(3 * K, 0.1), jac=jac, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                     **kw)


def test_nonlinear_multi_output_equals_scipy(tanh_layer):
    kernel, data = tanh_layer
    ref = _scipy_tanh(data, method="lm")
    fit = sg.least_squares(kernel, np.full(3 * K, 0.1), data=data)
    assert fit.success
    np.testing.assert_allclose(fit.x, ref.x, atol=1e-8)
    assert fit.cost == pytest.approx(ref.cost, rel=1e-12)


@pytest.mark.slow  # -m slow (5 s, cold)
def test_bounds_and_robust_loss_on_array_residual(tanh_layer):
    kernel, data = tanh_layer
    lo, hi = np.full(3 * K, -np.inf), np.full(3 * K, np.inf)
    hi[0] = 0.5  # W[0, 0] is 1.0 at the truth: the bound is active
    ref = _scipy_tanh(data, method="trf", bounds=(lo, hi), loss="soft_l1", f_scale=0.1)
    fit = sg.least_squares(kernel, np.full(3 * K, 0.1), data=data, bounds=(lo, hi),
                           loss="soft_l1", f_scale=0.1)
    assert fit.x[0] == pytest.approx(0.5, abs=1e-12) and fit.active_mask[0] == 1
    np.testing.assert_allclose(fit.x, ref.x, atol=1e-6)
    assert fit.cost == pytest.approx(ref.cost, rel=1e-9)


def test_weights_on_array_residual(linear):
    kernel, data = linear
    w = np.random.default_rng(4).uniform(0.5, 2.0, N)  # one weight per sample
    fit = sg.least_squares(kernel, np.zeros(kernel.n_params), data=data, weights=w)
    sw = np.sqrt(w)[:, None]
    A = np.hstack([data["X"], np.ones((N, 1))]) * sw
    coef = np.linalg.lstsq(A, data["Y"] * sw, rcond=None)[0]
    ref = np.concatenate([coef[:D].T.ravel(), coef[D]])
    np.testing.assert_allclose(fit.x, ref, atol=1e-9)


@pytest.mark.parametrize("fuse", LOWERINGS)
def test_matrix_residual_per_sample_flattens_c_order(fuse):
    """A (2, 2) residual per sample: m = 4, rows sample-major in C order."""
    a = sg.params("a", shape=(2,))
    Z = sg.data("Z", shape=(2, 2))
    from symgrad.lang.ops import lift
    expr = Z * lift(a)  # broadcast over the last axis
    kernel = sg.compile_residuals(expr, fuse=fuse)
    assert kernel.shape == (2, 2)
    Zv = np.random.default_rng(5).standard_normal((5, 2, 2))
    x = np.array([2.0, -1.0])
    assert kernel.m == 4
    np.testing.assert_allclose(kernel.residuals(x, Z=Zv), (Zv * x).ravel(), atol=1e-15)


@pytest.mark.parametrize("fuse", LOWERINGS)
def test_clear_errors(fuse):
    W, _, X, Y = _symbols()
    with pytest.raises(ProblemError, match="sample axis"):  # reduced: a loss, not residuals
        sg.least_squares(sg.sum((W @ X - Y)**2), np.zeros(K * D), data={})
    with pytest.raises(ProblemError, match="sample axis"):  # parameters only
        sg.lsq.as_kernel(W * 2.0)
    with pytest.raises(ProblemError, match="one array expression"):
        sg.lsq.as_kernel([W @ X - Y, W @ X])
    kernel = sg.compile_residuals(W @ X - Y, fuse=fuse)
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"'X'.*shape"):
        sg.least_squares(kernel, np.zeros(K * D), data={"X": rng.standard_normal((10, D + 1)),
                                                       "Y": rng.standard_normal((10, K))})
    with pytest.raises(ValueError, match="'Y' has 9 samples"):
        sg.least_squares(kernel, np.zeros(K * D), data={"X": rng.standard_normal((10, D)),
                                                       "Y": rng.standard_normal((9, K))})
    with pytest.raises(TypeError, match="missing"):
        sg.least_squares(kernel, np.zeros(K * D), data={"X": rng.standard_normal((10, D))})
    with pytest.raises(ValueError, match="x0 has 3 values but there are 12"):
        sg.least_squares(kernel, np.zeros(3), data={"X": rng.standard_normal((10, D)),
                                                    "Y": rng.standard_normal((10, K))})
    Xbad = rng.standard_normal((10, D))
    Xbad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"'X'.*row 4"):
        sg.least_squares(kernel, np.zeros(K * D), data={"X": Xbad,
                                                       "Y": rng.standard_normal((10, K))})
    with pytest.raises(ValueError, match="at least as many residuals"):
        sg.least_squares(kernel, np.zeros(K * D), data={"X": rng.standard_normal((3, D)),
                                                       "Y": rng.standard_normal((3, K))})


def test_compile_residuals_and_to_scipy_take_array_residuals(linear):
    kernel, data = linear
    W, b, X, Y = _symbols()
    rk = sg.compile_residuals(W @ X + b - Y)
    assert rk.kind == "residual" and rk.params == kernel.params and rk.fused
    x = np.random.default_rng(7).standard_normal(rk.n_params)
    fun, jac = sg.lsq.to_scipy(W @ X + b - Y, data)
    np.testing.assert_array_equal(fun(x), rk.residuals(x, **data))
    np.testing.assert_array_equal(jac(x), rk.jacobian(x, **data))
    with pytest.raises(TypeError, match=r"declares its data with sg\.data"):
        sg.compile_residuals(W @ X + b - Y, data="X Y")


# -m slow (7 s of compile, cold; test_kernel_interface_against_materialised_jacobian stays quick)
@pytest.mark.slow
def test_a_non_finite_residual_at_x0_names_the_sample_and_its_rows():
    W, _, X, Y = _symbols(2)
    rng = np.random.default_rng(8)
    Xv = np.abs(rng.standard_normal((20, 2)))
    Xv[5] = [-1.0, -2.0]  # log of a negative at x0 = 1
    with pytest.raises(ValueError, match=r"residual 0 of sample 5 \(X=\[-1\. -2\.\], Y=\["):
        sg.least_squares(sg.log(W @ X) - Y, np.ones(2 * K),
                         data={"X": Xv, "Y": rng.standard_normal((20, K))})


@pytest.mark.slow  # -m slow (5 s, cold)
def test_normal_never_stores_the_jacobian(linear):
    """The fused pass allocates O(block * m * P), not the (M, P) Jacobian."""
    import tracemalloc

    kernel, _ = linear
    rng = np.random.default_rng(9)
    n = 100_000
    data = {"X": rng.standard_normal((n, D)), "Y": rng.standard_normal((n, K))}
    bound = kernel.bind(**data)
    x = rng.standard_normal(kernel.n_params)
    bound.normal(x)  # warm
    tracemalloc.start()
    bound.normal(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if kernel.fused:  # the chunks' partial sums only
        assert peak < 200_000
    else:
        block_bytes = kernel.block * K * kernel.n_params * 8
        assert kernel.block == 2048 and peak < 4 * block_bytes  # J alone: 36 MB
    assert peak < n * K * kernel.n_params * 8 / 20


def test_non_finite_data_is_named_without_a_numpy_warning(linear):
    # regression: the array lowering's block sums warned "invalid value encountered in add"
    # before the error naming the datum, so under -W error the warning hid that error (both
    # lowerings: the module fixture's kernels, whose passes the tests above compiled)
    kernel, _ = linear
    rng = np.random.default_rng(8)
    Xbad, Yd = rng.standard_normal((10, D)), rng.standard_normal((10, K))
    Xbad[4, 1] = np.inf
    x = np.ones(K * D + K)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in (lambda: kernel.normal(x, X=Xbad, Y=Yd),
                     lambda: kernel.vjp(x, np.ones(10 * K), X=Xbad, Y=Yd),
                     lambda: kernel.jvp(x, x, X=Xbad, Y=Yd)):
            with pytest.raises(ValueError, match=r"'X' has a non-finite value \(inf\) at row 4"):
                call()
