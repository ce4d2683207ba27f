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


def test_data_inside_an_index_sum_is_a_clear_error():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    t = sg.data("t")
    with pytest.raises(sg.ProblemError, match=r"data column 't' inside sg\.sum"):
        sg.compile(sg.sum(t * x[i] ** 2, (i, 0, x.length)))
