"""Indexed sums over parameter vectors: loops stay loops, n is known only at call time."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg


def ext_rosenbrock_numpy(z):
    a = z[1:] - z[:-1] ** 2
    b = 1.0 - z[:-1]
    g = np.zeros_like(z)
    g[:-1] += -400.0 * z[:-1] * a - 2.0 * b
    g[1:] += 200.0 * a
    return float(np.sum(100.0 * a * a + b * b)), g


def ext_rosenbrock():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    return sg.sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, x.length - 1))


@pytest.fixture(scope="module")
def rosen():
    return sg.compile(ext_rosenbrock())


def num_grad(fun, z, h=1e-6):
    e = np.eye(len(z))
    return np.array([(fun(z + h * e[k]) - fun(z - h * e[k])) / (2 * h) for k in range(len(z))])


@pytest.mark.parametrize("n", [10, 1000, 1_000_000])
def test_ext_rosenbrock_matches_numpy(rosen, n):
    z = np.random.default_rng(n).normal(size=n)
    v, g = rosen.value_and_grad(z)
    rv, rg = ext_rosenbrock_numpy(z)
    assert v == pytest.approx(rv, rel=1e-12)
    assert rosen.value(z) == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-12, atol=1e-12 * np.abs(rg).max())


def test_one_module_serves_every_n(rosen, tmp_path):
    path = sg.generate(ext_rosenbrock(), tmp_path / "ext_rosen.py")
    text = path.read_text()
    assert "for i in range(lo, hi):" in text  # a loop, not n unrolled terms
    assert len(text.splitlines()) < 400
    for n in (3, 17, 250):
        z = np.linspace(-1, 1, n)
        assert rosen.value(z) == pytest.approx(ext_rosenbrock_numpy(z)[0], rel=1e-12)


@pytest.mark.slow  # a second, unrolled kernel: index-sum Hessians are checked quick below
def test_hessian_and_hvp_match_unrolled(rosen):
    q = sg.params("q0:6")
    unrolled = sg.compile(sum(100 * (q[k + 1] - q[k] ** 2) ** 2 + (1 - q[k]) ** 2
                              for k in range(5)))
    z = np.random.default_rng(1).normal(size=6)
    np.testing.assert_allclose(rosen.hessian(z), unrolled.hessian(z), rtol=1e-13, atol=1e-12)
    v = np.random.default_rng(2).normal(size=6)
    np.testing.assert_allclose(rosen.hvp(z, v), unrolled.hvp(z, v), rtol=1e-12, atol=1e-12)


def test_hvp_large_n_matches_gradient_differences(rosen):
    rng = np.random.default_rng(3)
    z, v = rng.normal(size=2000), rng.normal(size=2000)
    h = 1e-6
    fd = (rosen.grad(z + h * v) - rosen.grad(z - h * v)) / (2 * h)
    hv = rosen.hvp(z, v)
    assert np.max(np.abs(hv - fd)) <= 1e-6 * np.max(np.abs(hv))


@pytest.fixture(scope="module")
def mixed():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    w = sg.params("w", indexed=True)
    j = sg.index("j")
    loss = (sg.mean((a * t + b - y) ** 2)
            + 0.1 * sg.sum((w[j + 1] - w[j]) ** 2, (j, 0, w.length - 1)) ** 2
            + a * sg.sum(b * w[j] ** 2, (j, 0, w.length)) + sp.log(1 + a ** 2))
    rng = np.random.default_rng(4)
    return sg.compile(loss), {"t": rng.normal(size=40), "y": rng.normal(size=40)}


@pytest.mark.slow  # -m slow (7 s of compile, cold; test_mixed_sums keeps a mixed loss quick)
def test_mixed_loss_value_gradient_hessian(mixed):
    f, data = mixed
    assert f.params == ("a", "b", "w[:]")
    assert f.n_params is None
    z = np.random.default_rng(5).normal(size=2 + 7)
    a, b, w = z[0], z[1], z[2:]
    t, y = data["t"], data["y"]
    want = (np.mean((a * t + b - y) ** 2) + 0.1 * np.sum(np.diff(w) ** 2) ** 2
            + a * b * np.sum(w ** 2) + np.log(1 + a * a))
    assert f.value(z, **data) == pytest.approx(want, rel=1e-12)
    g = f.grad(z, **data)
    gn = num_grad(lambda zz: f.value(zz, **data), z)
    np.testing.assert_allclose(g, gn, rtol=1e-7, atol=1e-7)
    H = f.hessian(z, **data)
    Hn = np.array([num_grad(lambda zz, k=k: f.grad(zz, **data)[k], z) for k in range(len(z))])
    np.testing.assert_allclose(H, Hn, rtol=1e-6, atol=1e-6)
    assert f.param_names(len(z))[2:4] == ("w[0]", "w[1]")


def test_x_of_bad_length_is_named(mixed):
    f, data = mixed
    with pytest.raises(ValueError, match="scalar"):
        f.value(np.zeros(2), **data)


def test_reading_outside_the_vector_is_an_error():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    f = sg.compile(sg.sum(x[i + 1] ** 2, (i, 0, x.length)))  # x[n] does not exist
    with pytest.raises(ValueError, match="outside the parameter vector"):
        f.value(np.ones(4))


def test_checker_and_optimizer_work_unchanged(rosen):
    z = np.random.default_rng(6).normal(size=50)
    chk = sg.check_grad(rosen, z, method="central")
    assert chk.ok, chk
    res = sg.minimize(rosen, np.full(100_000, 0.5), optimizer=sg.optim.adam(lr=1e-2), steps=30)
    assert res.x.shape == (100_000,)
    assert res.fun < rosen.value(np.full(100_000, 0.5))


def test_checker_uses_complex_step_on_vector_kernels(rosen):
    z = np.random.default_rng(7).normal(size=30)
    chk = sg.check_grad(rosen, z)  # auto: the loss is analytic, so complex step
    assert chk.method == "complex" and chk.ok, chk
    assert chk.max_rel_err < 1e-13
    assert rosen.value_complex(z) == pytest.approx(rosen.value(z), rel=1e-15)


def test_per_sample_data_inside_an_index_sum_points_to_indexed_columns():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    t = sg.data("t")
    with pytest.raises(sg.ProblemError, match=r"per-sample data column 't' inside sg\.sum.*"
                       r"sg\.data\('t', indexed=True\).*t\[i\]"):
        sg.compile(sg.sum(t * x[i] ** 2, (i, 0, x.length)))


# -- element-wise data columns: y[i] next to x[i] ------------------------------------------------

def smoothing_numpy(z, y, w):
    """lam^2 * sum w[i] (x[i] - y[i])^2 + sum (x[i+1] - x[i])^2, value and gradient."""
    lam, x = z[0], z[1:]
    r, d = x - y, np.diff(x)
    g = np.zeros_like(z)
    g[0] = 2 * lam * np.sum(w * r * r)
    g[1:] = 2 * lam**2 * w * r
    g[1:-1] -= 2 * d
    g[2:] += 2 * d
    return float(lam**2 * np.sum(w * r * r) + np.sum(d * d)), g


def smoothing_loss():
    x = sg.params("x", indexed=True)
    lam = sg.params("lam")
    y, w = sg.data("y w", indexed=True)
    i = sg.index("i")
    return (lam**2 * sg.sum(w[i] * (x[i] - y[i]) ** 2, (i, 0, x.length))
            + sg.sum((x[i + 1] - x[i]) ** 2, (i, 0, x.length - 1)))


@pytest.fixture(scope="module")
def smoothing():
    return sg.compile(smoothing_loss())


def _smoothing_point(n, seed=0):
    rng = np.random.default_rng(seed)
    return (np.concatenate([[0.8], rng.normal(size=n)]), rng.normal(size=n),
            rng.uniform(0.5, 2.0, size=n))


@pytest.mark.parametrize("n", [10, 1000, 1_000_000])
def test_element_columns_match_numpy(smoothing, n):
    z, y, w = _smoothing_point(n, seed=n)
    v, g = smoothing.value_and_grad(z, y=y, w=w)
    rv, rg = smoothing_numpy(z, y, w)
    assert v == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-12, atol=1e-12 * np.abs(rg).max())


@pytest.mark.slow  # -m slow (3-4 s of compile, cold; element columns stay quick against NumPy)
def test_element_columns_hessian_hvp_and_checker(smoothing):
    z, y, w = _smoothing_point(9, seed=1)
    data = {"y": y, "w": w}
    H = smoothing.hessian(z, **data)
    Hn = np.array([num_grad(lambda zz, k=k: smoothing.grad(zz, **data)[k], z)
                   for k in range(len(z))])
    np.testing.assert_allclose(H, Hn, rtol=1e-6, atol=1e-6)
    v = np.random.default_rng(2).normal(size=len(z))
    np.testing.assert_allclose(smoothing.hvp(z, v, **data), H @ v, rtol=1e-12, atol=1e-12)
    chk = sg.check_grad(smoothing, z, data=data)
    assert chk.method == "complex" and chk.ok, chk
    assert "x[0]" in str(chk) and "lam" in str(chk)


def test_element_columns_accept_float32_int_and_lists(smoothing):
    z, y, w = _smoothing_point(6, seed=3)
    want = smoothing.value(z, y=y, w=w)
    assert smoothing.value(z, y=list(y), w=w) == want
    y32 = y.astype(np.float32)
    assert smoothing.value(z, y=y32, w=w) == pytest.approx(
        smoothing.value(z, y=y32.astype(np.float64), w=w), rel=1e-15)
    assert smoothing.value(z, y=np.round(y).astype(int), w=w) == smoothing.value(
        z, y=np.round(y), w=w)


def test_element_column_errors_name_the_column(smoothing):
    z, y, w = _smoothing_point(6, seed=4)
    with pytest.raises(ValueError, match="reads outside data column w: pass a longer array"):
        smoothing.value(z, y=y, w=w[:-1])
    with pytest.raises(TypeError, match="missing data column 'w'"):
        smoothing.value(z, y=y)
    with pytest.raises(ValueError, match=r"'y' must have shape \(n,\)"):
        smoothing.value(z, y=y[:, None], w=w)
    bad = w.copy()
    bad[2] = np.inf
    with pytest.raises(ValueError, match="'w' has a non-finite value \\(inf\\) at element 2"):
        smoothing.value(z, y=y, w=bad)
    with pytest.raises(TypeError, match="batch= selects samples"):
        smoothing.value(z, y=y, w=w, batch=slice(0, 2))


def test_element_columns_bind_and_optimize(smoothing):
    n = 100_000
    z, y, w = _smoothing_point(n, seed=5)
    z[0] = 1.0
    fb = smoothing.bind(y=y, w=w)
    assert fb.value(z) == smoothing.value(z, y=y, w=w)
    res = sg.minimize(smoothing, z, data={"y": y, "w": w}, optimizer=sg.optim.adam(lr=1e-2),
                      steps=20)
    assert res.x.shape == z.shape and res.fun < smoothing.value(z, y=y, w=w)


def test_element_columns_mix_with_sample_reductions_and_scalars():
    a = sg.params("a")
    x = sg.params("x", indexed=True)
    t = sg.data("t")
    c = sg.data("c", indexed=True)
    i = sg.index("i")
    f = sg.compile(sg.mean((a * t - 1) ** 2) + a * sg.sum(c[i] * x[i] ** 2 + c[i + 1] * x[i],
                                                          (i, 0, x.length)) + a**4)
    assert f.params == ("a", "x[:]") and f.data_names == ("t", "c")
    rng = np.random.default_rng(8)
    tt, cc, z = rng.normal(size=30), rng.normal(size=6), rng.normal(size=6)
    aa, xx = z[0], z[1:]
    want = np.mean((aa * tt - 1) ** 2) + aa * np.sum(cc[:5] * xx**2 + cc[1:] * xx) + aa**4
    assert f.value(z, t=tt, c=cc) == pytest.approx(want, rel=1e-12)
    g = f.grad(z, t=tt, c=cc)
    np.testing.assert_allclose(g, num_grad(lambda q: f.value(q, t=tt, c=cc), z), rtol=1e-7,
                               atol=1e-8)
    # a batch selects samples of t only; the element-wise column is read whole
    half = f.value(z, t=tt, c=cc, batch=slice(0, 15))
    want = np.mean((aa * tt[:15] - 1) ** 2) + aa * np.sum(cc[:5] * xx**2 + cc[1:] * xx) + aa**4
    assert half == pytest.approx(want, rel=1e-12)


def test_an_index_sum_over_data_alone_fits_scalar_parameters():
    a, b = sg.params("a b")
    y = sg.data("y", indexed=True)
    i = sg.index("i")
    f = sg.compile(sg.sum((a * i + b - y[i]) ** 2, (i, 0, y.length)))  # a line through y[i]
    assert f.n_params == 2
    y = 3.0 * np.arange(50) - 2.0
    res = sg.minimize(f, [0.0, 0.0], data={"y": y}, optimizer=sg.optim.adam(lr=0.5),
                      steps=3000)
    np.testing.assert_allclose(res.x, [3.0, -2.0], atol=1e-6)


@pytest.mark.parametrize("build, msg", [
    (lambda x, y, t, i: sg.sum(x[i] ** 2, (i, 0, x.length)) + y[0],
     r"y\[0\] appears outside sg\.sum"),
    (lambda x, y, t, i: sg.mean(t * y[i]) + sg.sum(x[i] ** 2, (i, 0, x.length)),
     r"y\[i\] appears inside a reduction over samples"),
    (lambda x, y, t, i: sg.sum(x[i] * y[2 * i], (i, 0, x.length)),
     "summation index plus a constant"),
])
def test_element_columns_misuse_is_explained(build, msg):
    x = sg.params("x", indexed=True)
    y = sg.data("y", indexed=True)
    t = sg.data("t")
    i = sg.index("i")
    with pytest.raises(sg.ProblemError, match=msg):
        sg.compile(build(x, y, t, i))


def test_an_element_column_cannot_share_a_name():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    t_elem = sg.data("t", indexed=True)
    t = sg.data("t")
    with pytest.raises(sg.ProblemError, match="'t' names both an element-wise data column and "
                       "a per-sample data column"):
        sg.compile(sg.mean(t**2) * sg.sum(t_elem[i] * x[i], (i, 0, x.length)))


@pytest.mark.slow  # -m slow (3-4 s of compile, cold; element columns stay quick against NumPy)
def test_generated_module_with_element_columns_is_standalone(tmp_path):
    path = sg.generate(smoothing_loss(), tmp_path / "smooth.py")
    text = path.read_text()
    assert "DATA = ('w', 'y')" in text and "y[:] (element-wise)" in text
    from symgrad.runtime.scalar import load_module
    mod = load_module(path, "smooth_standalone_test")
    z, yy, ww = _smoothing_point(12, seed=9)
    g = np.empty_like(z)
    v = mod.value_and_grad(z, g, ww, yy)
    rv, rg = smoothing_numpy(z, yy, ww)
    assert v == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-12, atol=1e-12)


def test_a_limit_that_is_not_a_whole_number_is_refused():
    # x.length/2 was truncated toward 0 (i ran over 0..1 for n = 5, not lo <= i < hi)
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    with pytest.raises(ValueError, match=r"upper limit len_x/2 is not a whole number"):
        sg.sum(x[i] ** 2, (i, 0, x.length / 2))
    with pytest.raises(ValueError, match=r"lower limit .* not a whole number"):
        sg.sum(x[i] ** 2, (i, 2.5, x.length))
    f = sg.compile(sg.sum(x[i] ** 2, (i, 0, sp.ceiling(x.length / 2))))
    assert f.value(np.arange(1.0, 6.0)) == 1 + 4 + 9


def test_pack_refuses_vectors_of_different_lengths():
    # u of 2 and v of 4 were packed, then read back as u and v of 3 each
    u, v = sg.params("u", indexed=True), sg.params("v", indexed=True)
    a = sg.params("a")
    i = sg.index("i")
    f = sg.compile(sg.sum((u[i] - 1) ** 2 + (v[i] - a) ** 2, (i, 0, u.length)))
    with pytest.raises(ValueError, match="share one length n, got u of 2, v of 4"):
        f.pack(a=1.0, u=[1.0, 2.0], v=[3.0, 4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="share one length n"):
        sg.minimize(f, {"a": 1.0, "u": np.zeros(2), "v": np.zeros(4)}, steps=2)


def test_a_generated_module_names_its_vectors_in_the_layout_of_x(tmp_path):
    # PARAMS listed the scalars only, while the docstring said x is "the parameters in PARAMS
    # order": the vectors' place in x was nowhere in the module's constants
    x, a = sg.params("x", indexed=True), sg.params("a")
    i = sg.index("i")
    text = sg.generate(sg.sum((x[i + 1] - x[i]) ** 2, (i, 0, x.length - 1)) + a**2,
                       tmp_path / "vec_layout.py").read_text()
    assert "PARAMS = ('a',)" in text and "VECTORS = ('x',)" in text
    assert "x holds the n entries of each vector of VECTORS" in text


def test_param_names_on_every_kind_of_kernel_with_vectors():
    # the unfused sum kernel had no param_names; without a size it raised NoneType - int
    q, s = sg.params("qv", indexed=True), sg.params("sq")
    W, X, y = sg.params("Wq", shape=(2, 2)), sg.data("Xq", shape=(2,)), sg.data("yq")
    i = sg.index("i")
    loss = (sg.sum((q[i + 1] - q[i]) ** 2, (i, 0, q.length - 1))
            + sg.mean((sg.sum(X @ W, axis=0) + s - y) ** 2))
    want = ("sq", "Wq[0, 0]", "Wq[0, 1]", "Wq[1, 0]", "Wq[1, 1]", "qv[0]", "qv[1]", "qv[2]")
    for f in (sg.compile(loss), sg.compile(loss, fuse=False)):
        assert f.param_names(8) == want
        with pytest.raises(TypeError, match=r"pass it \(f.param_names\(x.size\)\)"):
            f.param_names()
    v = sg.compile(sg.sum((q[i + 1] - q[i]) ** 2, (i, 0, q.length - 1)))
    assert v.param_names(2) == ("qv[0]", "qv[1]")
    with pytest.raises(TypeError, match="param_names"):
        v.param_names()
