"""A loss that is a sum of index sums and array terms (issue 22): one kernel, one packed x."""

import numpy as np
import pytest
from mixed_losses import mixed_loss

import symgrad as sg
from symgrad.ir.graph import ShapeError
from symgrad.ir.problem import ProblemError

RNG_SEED = 22


def reference(p, X, y, z):
    """Value, gradient and Hessian by hand in NumPy, by parameter name.

    (The parameter names are this file's own: the default packing order follows the last
    declaration of a name, so re-declaring another test module's ``a`` would reorder it.)"""
    a, c, w, v = float(p["am"]), float(p["cm"]), p["wm"], p["vm"]
    n, N = v.shape[0], X.shape[0]
    d = v[1:] - v[:-1]
    r = X @ w + a - y
    e = v - c * z
    val = (np.sum(d * d) + a * a * np.sum(v[:-1] ** 2) + np.sum(e * e) + np.mean(r * r)
           + 0.1 * np.sum(w * w))
    gv = 2 * e
    gv[:-1] += -2 * d + 2 * a * a * v[:-1]
    gv[1:] += 2 * d
    g = {"am": 2 * a * np.sum(v[:-1] ** 2) + 2 * np.mean(r), "cm": -2 * np.sum(z * e),
         "wm": 2 / N * X.T @ r + 0.2 * w, "vm": gv}
    D = np.diff(np.eye(n), axis=0)
    H = {("vm", "vm"): (2 * D.T @ D + np.diag(np.r_[2 * a * a * np.ones(n - 1), 0.0])
                      + 2 * np.eye(n)),
         ("vm", "am"): np.r_[4 * a * v[:-1], 0.0][:, None], ("vm", "cm"): -2 * z[:, None],
         ("cm", "cm"): np.array([[2 * np.sum(z * z)]]),
         ("am", "am"): np.array([[2 * np.sum(v[:-1] ** 2) + 2.0]]),
         ("wm", "am"): (2 / N * X.sum(axis=0))[:, None],
         ("wm", "wm"): 2 / N * X.T @ X + 0.2 * np.eye(3)}
    return val, g, H


def dense(f, H, size):
    """The Hessian blocks placed by the kernel's own packing (symmetric)."""
    pos = {k: np.atleast_1d(q).astype(int) for k, q in
           f.unpack(np.arange(size, dtype=float)).items()}
    out = np.zeros((size, size))
    for (p, q), blk in H.items():
        out[np.ix_(pos[p], pos[q])] = blk
        out[np.ix_(pos[q], pos[p])] = blk.T
    return out


@pytest.fixture(scope="module", params=[pytest.param(False, marks=pytest.mark.slow), None],
                ids=["two parts", "fused"])
def f(request):
    """The sum kernel of the two parts, and the one fused module (the default: small arrays).
    The quick suite runs the default; the two-part kernel (array code plus the index-sum
    module, about 25 s of compile) runs under ``-m slow``."""
    return sg.compile(mixed_loss(), fuse=request.param)


def problem_data(n, N=40):
    rng = np.random.default_rng(RNG_SEED + n)
    X, y, z = rng.normal(size=(N, 3)), rng.normal(size=N), rng.normal(size=n)
    p = {"am": rng.uniform(0.5, 1.5), "cm": rng.normal(), "wm": rng.normal(size=3),
         "vm": rng.normal(size=n)}
    return p, {"X": X, "y": y, "z": z}


def test_kind_and_packing_order(f):
    assert f.kind == ("scalar" if type(f).__name__ == "FusedKernel" else "sum")
    assert isinstance(f, sg.Kernel)
    # the array parameters (a shared scalar is one of them), then c, then the vector
    assert f.params[-2:] == ("cm", "vm[:]")
    assert set(f.params[:-2]) == {"am", "wm"}
    assert f.shapes["am"] == () and f.shapes["wm"] == (3,) and f.shapes["vm"] == (None,)
    assert f.n_params is None and set(f.data_names) == {"X", "y", "z"}
    assert f.sampled == ("X", "y") or set(f.sampled) == {"X", "y"}


@pytest.mark.parametrize("n", [2, 7, 60])
def test_matches_numpy(f, n):
    p, data = problem_data(n)
    x = f.pack(**p)
    val, g, H = reference(p, data["X"], data["y"], data["z"])
    gref = f.pack(**g)
    Href = dense(f, H, x.shape[0])
    v, gr = f.value_and_grad(x, **data)
    assert v == pytest.approx(val, rel=1e-12)
    assert f.value(x, **data) == pytest.approx(val, rel=1e-12)
    np.testing.assert_allclose(gr, gref, rtol=1e-12, atol=1e-12 * np.abs(gref).max())
    np.testing.assert_allclose(f.grad(x, **data), gr, rtol=0, atol=0)
    Hk = f.hessian(x, **data)
    np.testing.assert_allclose(Hk, Href, rtol=1e-12, atol=1e-12 * np.abs(Href).max())
    u = np.random.default_rng(n).normal(size=x.shape[0])
    hv = Href @ u
    np.testing.assert_allclose(f.hvp(x, u, **data), hv, rtol=1e-12,
                               atol=1e-12 * np.abs(hv).max())


def test_bound_equals_unbound(f):
    p, data = problem_data(9)
    x = f.pack(**p)
    fb = f.bind(**data)
    assert fb.kind == f.kind and fb.params == f.params
    assert fb.value(x) == f.value(x, **data)
    np.testing.assert_array_equal(fb.value_and_grad(x)[1], f.grad(x, **data))
    u = np.linspace(-1, 1, x.shape[0])
    np.testing.assert_array_equal(fb.hvp(x, u), f.hvp(x, u, **data))
    np.testing.assert_array_equal(fb.hessian(x), f.hessian(x, **data))
    out = np.empty_like(x)
    assert fb.value_and_grad(x, out)[1] is out


def test_batch_selects_array_samples(f):
    p, data = problem_data(5)
    x = f.pack(**p)
    sub = {"X": data["X"][:10], "y": data["y"][:10], "z": data["z"]}
    assert f.value(x, batch=slice(0, 10), **data) == pytest.approx(f.value(x, **sub),
                                                                    rel=1e-14)


def test_minimize_converges(f):
    p, data = problem_data(12)
    x0 = f.pack(**p)
    res = sg.minimize(f, x0, data=data, optimizer=sg.optim.lbfgs(), steps=500, gtol=1e-10)
    g = f.grad(res.x, **data)
    assert res.success, res.message
    assert np.linalg.norm(g) < 1e-6
    assert f.value(res.x, **data) < f.value(x0, **data)
    # at the minimum the Hessian is positive definite (a true minimum, not a saddle)
    assert np.linalg.eigvalsh(f.hessian(res.x, **data)).min() > 0


def test_non_finite_data_is_named(f):
    p, data = problem_data(4)
    x = f.pack(**p)
    bad = dict(data, y=data["y"].copy())
    bad["y"][3] = np.nan
    with pytest.raises(ValueError, match=r"'y'.*row 3"):
        f.value(x, **bad)
    bad = dict(data, z=data["z"].copy())
    bad["z"][1] = np.inf
    with pytest.raises(ValueError, match=r"'z'"):
        f.value_and_grad(x, **bad)


def test_wrong_data_and_x_are_named(f):
    p, data = problem_data(4)
    x = f.pack(**p)
    with pytest.raises(TypeError, match="'z'"):
        f.value(x, X=data["X"], y=data["y"])
    with pytest.raises(ValueError, match="vector"):
        f.value(x[:3], **data)


def _parts():
    v = sg.params("vm", indexed=True)
    i = sg.index("i")
    w = sg.params("wm", shape=(2,))
    X = sg.data("X", shape=(2,))
    return sg.sum((v[i + 1] - v[i]) ** 2, (i, 0, v.length - 1)), sg.mean((X @ w) ** 2), w


@pytest.mark.parametrize("combine, what", [
    (lambda s, t: s * t, "the product"),
    (lambda s, t: t * s, "the product"),
    (lambda s, t: t / s, "the quotient"),
    (lambda s, t: (s + t) * (s + t), "the product"),
    (lambda s, t: (s + t) ** 2, "the power"),
    (lambda s, t: sg.exp(t) * s, "the product"),
    (lambda s, t: sg.exp(s + t), "sg.exp"),
])
def test_products_are_refused_by_name(combine, what):
    s, t, _ = _parts()
    with pytest.raises(ShapeError, match=f"{what} of .*index sum.* is refused.*a \\+ b"):
        combine(s, t)


def test_reducing_a_mixed_sum_is_refused():
    s, t, _ = _parts()
    with pytest.raises(TypeError, match=r"sg.mean takes a SymPy expression.*MixedSum"):
        sg.mean(s + t)


def test_array_shaped_term_is_refused():
    s, _, w = _parts()
    with pytest.raises(ShapeError, match=r"scalar array loss.*shape"):
        s + w


def test_scaled_and_subtracted_sums_compile(f):
    s, t, _ = _parts()
    g = sg.compile(2.0 * (t - s) + s)  # = 2 t - s
    rng = np.random.default_rng(3)
    X, v, w = rng.normal(size=(8, 2)), rng.normal(size=6), rng.normal(size=2)
    x = g.pack(vm=v, wm=w)
    ref = 2 * np.mean((X @ w) ** 2) - np.sum(np.diff(v) ** 2)
    assert g.value(x, X=X) == pytest.approx(ref, rel=1e-12)


def test_options_a_sum_cannot_honour(tmp_path):
    s, t, _ = _parts()
    with pytest.raises(ValueError, match=r"fuse=False: float32 needs the one fused module.*"
                                         r"loss.array with dtype='float32'"):
        sg.compile(s + t, dtype="float32", fuse=False)  # a SumKernel: float64 only
    # array terms that do not fuse: fuse=True says why (float64 needs no float32 advice: a
    # regression, it got the float32 refusal), dtype='float32' refuses with what to do
    W, X = sg.params("Wm", shape=(40, 3)), sg.data("X", shape=(3,))
    big = s + sg.mean(sg.sum((W @ X) ** 2, axis=-1))
    with pytest.raises(ValueError, match=r"^fuse=True: this array loss does not fuse: 120 "
                                         r"parameters.*leave fuse unset"):
        sg.compile(big, fuse=True)
    with pytest.raises(ValueError, match=r"dtype='float32': the array terms do not fuse \(120 "
                                         r"parameters.*loss.array with dtype='float32'"):
        sg.compile(big, dtype="float32")
    with pytest.raises(ProblemError, match="params="):
        sg.compile(s + t, params=["wm"])
    with pytest.raises(ProblemError, match="standalone module"):
        sg.generate(s + t, tmp_path / "mixed.py", fuse=False)
    path = sg.generate(s + t, tmp_path / "mixed.py")  # fused: one module, the one compile runs
    def body(text):  # all but the command that regenerates it and the hash over it
        return [ln for ln in text.splitlines() if not ln.startswith(("# regenerate", "# content"))]

    assert body(path.read_text()) == body(sg.compile(s + t).source)


def test_check_grad_and_complex_step(f):
    p, data = problem_data(6)
    x = f.pack(**p)
    assert sg.check_grad(f, x, data=data).ok
    assert f.analytic
    assert f.value_complex(x.astype(complex), **data).real == pytest.approx(
        f.value(x, **data), rel=1e-14)


def test_training_runs_the_python_loop_or_compiled_when_fused(f):
    p, data = problem_data(6)
    x0 = f.pack(**p)
    fb = f.bind(**data)
    res = sg.minimize(fb, x0, optimizer=sg.optim.lbfgs(), steps=300)
    assert res.success and f.value(res.x, **data) < f.value(x0, **data)
    # mini-batches pick rows of the array terms' data; z (element-wise) is read whole
    res = sg.minimize(f, x0, data=data, optimizer=sg.optim.adam(lr=1e-2), steps=40,
                      batch_size=8, seed=0)
    assert np.isfinite(res.fun)
    run = dict(data=data, optimizer=sg.optim.adam(lr=1e-2), steps=5)
    if f.kind == "sum":
        with pytest.raises(ValueError, match=r"compiled=True is not possible.*Python loop"):
            sg.minimize(f, x0, compiled=True, **run)
    else:  # one fused module: the compiled loop runs it, as the Python loop does
        np.testing.assert_allclose(sg.minimize(f, x0, compiled=True, **run).x,
                                   sg.minimize(f, x0, compiled=False, **run).x, rtol=1e-12)


def test_dask_columns_are_refused_by_name_or_run_when_fused(f):
    import dask.array as da
    p, data = problem_data(4)
    x = f.pack(**p)
    cols = dict(data, X=da.from_array(data["X"], chunks=(16, 3)),
                y=da.from_array(data["y"], chunks=16))
    if f.kind == "sum":
        with pytest.raises(NotImplementedError, match=r"Dask columns.*not yet with their sum"):
            f.value(x, **cols)
    else:
        assert f.value(x, **cols) == pytest.approx(f.value(x, **data), rel=1e-13)
        np.testing.assert_allclose(f.grad(x, **cols), f.grad(x, **data), rtol=1e-12)


@pytest.fixture(scope="module", params=[False, None], ids=["two parts", "fused"])
def with_means(request):
    v = sg.params("vm", indexed=True)
    i = sg.index("i")
    a = sg.params("am")
    w = sg.params("wm", shape=(2,))
    X, t, q = sg.data("X", shape=(2,)), sg.data("t"), sg.data("q")
    s = sg.sum((v[i + 1] - v[i]) ** 2, (i, 0, v.length - 1))
    # a scalar sample mean without an index sum joins the array terms; one scaling an index
    # sum stays with it (on the scalar path): a batch picks the same rows of both parts' data
    return sg.compile(sg.mean(t) * s + sg.mean((X @ w) ** 2) + sg.mean((a * t - q) ** 2),
                      fuse=request.param)


# the fused module's case is slow: test_batch_selects_array_samples[fused] keeps its batches quick
@pytest.mark.parametrize("with_means", [False, pytest.param(None, marks=pytest.mark.slow)],
                         ids=["two parts", "fused"], indirect=True)
def test_sample_means_in_both_parts_share_a_batch(with_means):
    f = with_means
    assert set(f.sampled) == {"X", "t", "q"}
    if f.kind == "sum":
        assert "t" in f.scalar.data_names and "q" in f.array.data_names
    rng = np.random.default_rng(7)
    X, t, q, v, w = (rng.normal(size=(9, 2)), rng.normal(size=9), rng.normal(size=9),
                     rng.normal(size=5), rng.normal(size=2))
    x = f.pack(vm=v, wm=w, am=0.7)
    data = {"X": X, "t": t, "q": q}
    for rows in (slice(None), np.array([0, 3, 4]), slice(2, 7)):
        ref = (np.mean(t[rows]) * np.sum(np.diff(v) ** 2) + np.mean((X[rows] @ w) ** 2)
               + np.mean((0.7 * t[rows] - q[rows]) ** 2))
        assert f.value(x, batch=rows, **data) == pytest.approx(ref, rel=1e-12)
    fb = f.bind(**data)
    assert fb.value(x) == f.value(x, **data)


def test_one_name_two_layouts_is_refused():
    v = sg.params("vm", indexed=True)
    i = sg.index("i")
    a = sg.params("am")
    A = sg.params("am", shape=(2,))
    X = sg.data("X", shape=(2,))
    with pytest.raises(ProblemError, match=r"'am' is a scalar in the index sums but has shape"):
        sg.compile(sg.sum(a * v[i] ** 2, (i, 0, v.length)) + sg.mean((X @ A) ** 2))


def test_kind_names_the_sum():
    s, t, _ = _parts()
    with pytest.raises(ProblemError, match=r"kind='array', but this is a sum of index sums"):
        sg.compile(s + t, kind="array")
