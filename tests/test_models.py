"""Models (issue 23): expressions that keep the sample axis compile to per-sample predictions
with their Jacobian in the parameters; ``outputs=`` shares a loss's parameters and packing."""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest

import symgrad as sg
from symgrad.lang import losses

a, b, c = sg.params("a b c")
t, y = sg.data("t y")
DECAY = a * sg.exp(-b * t) + c


@pytest.fixture(scope="module")
def decay():
    return sg.compile(DECAY, [a, b, c])


@pytest.fixture(scope="module")
def mnist_net():
    """The 784-128-10 relu network: its loss with the logits and probabilities as outputs."""
    W1, b1 = sg.params("W1", shape=(128, 784)), sg.params("b1", shape=(128,))
    W2, b2 = sg.params("W2", shape=(10, 128)), sg.params("b2", shape=(10,))
    X, Y = sg.data("X", shape=(784,)), sg.data("Y", shape=(10,))
    logits = W2 @ sg.relu(W1 @ X + b1) + b2
    return sg.compile(losses.cross_entropy(logits, Y) + losses.l2(W1, W2, weight=1e-4),
                      [W1, b1, W2, b2],
                      outputs={"logits": logits, "proba": sg.softmax(logits)})


@pytest.fixture(scope="module")
def small_net():
    W1, b1 = sg.params("V1", shape=(5, 3)), sg.params("c1", shape=(5,))
    W2 = sg.params("V2", shape=(2, 5))
    X = sg.data("X", shape=(3,))
    return sg.compile(W2 @ sg.tanh(W1 @ X + b1))


def _forward(parts, X):
    hid = np.maximum(X @ parts["W1"].T + parts["b1"], 0.0)
    return hid @ parts["W2"].T + parts["b2"]


@pytest.mark.slow
def test_784_128_10_logits_equal_numpy(mnist_net):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(mnist_net.n_params) * 0.05
    X = rng.standard_normal((10_000, 784))
    model = mnist_net.outputs["logits"]
    assert model.params == mnist_net.params and model.n_params == mnist_net.n_params
    assert model.shape == (10,) and model.data_names == ("X",)
    ref = _forward(mnist_net.unpack(x), X)
    out = model(x, X=X)
    assert out.shape == (10_000, 10) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    # in chunks: the same numbers (up to BLAS's blocking of the last chunk)
    np.testing.assert_allclose(model(x, X=X, batch_size=999), out, rtol=1e-12,
                               atol=1e-12 * np.abs(ref).max())
    z = np.exp(ref - ref.max(axis=1, keepdims=True))
    np.testing.assert_allclose(mnist_net.outputs["proba"](x, X=X[:500]),
                               (z / z.sum(axis=1, keepdims=True))[:500], rtol=1e-12, atol=1e-15)


def test_decay_predictions_and_jacobian(decay):
    rng = np.random.default_rng(1)
    tt = np.sort(rng.uniform(0, 10, 400))
    x = np.array([4.0, 0.45, 0.6])
    assert decay.params == ("a", "b", "c") and decay.shape == ()
    ref = x[0] * np.exp(-x[1] * tt) + x[2]
    np.testing.assert_allclose(decay(x, t=tt), ref, rtol=1e-14, atol=0)
    e = np.exp(-x[1] * tt)
    analytic = np.column_stack([e, -x[0] * tt * e, np.ones_like(tt)])
    J = decay.jacobian(x, t=tt)
    assert J.shape == (400, 3)
    np.testing.assert_allclose(J, analytic, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(decay.jacobian(x, t=tt, batch_size=7), J)
    v = np.array([0.3, -2.0, 1.5])
    np.testing.assert_allclose(decay.jvp(x, v, t=tt), analytic @ v, rtol=1e-13, atol=1e-13)


@pytest.mark.slow  # -m slow (4-5 s of compile each, cold; the dense model stays quick)
def test_network_jacobian_matches_central_differences(small_net):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(small_net.n_params)
    X = rng.standard_normal((6, 3))
    J = small_net.jacobian(x, X=X)
    assert J.shape == (6, 2, small_net.n_params)
    _assert_columns_are_differences(small_net, x, J, X=X)
    v = rng.standard_normal(small_net.n_params)
    np.testing.assert_allclose(small_net.jvp(x, v, X=X), J @ v, atol=1e-13)


def _assert_columns_are_differences(model, x, J, **data) -> None:
    """Each column of ``J`` equals central differences of the model's outputs (h = 1e-6)."""
    h = 1e-6
    for j in range(model.n_params):
        e = np.zeros_like(x)
        e[j] = h
        fd = (model(x + e, **data) - model(x - e, **data)) / (2 * h)
        np.testing.assert_allclose(J[..., j], fd, atol=1e-8, err_msg=f"column {j}")


def test_outputs_share_the_loss_packing_scalar_loss():
    f = sg.compile(sg.mean((DECAY - y) ** 2), [a, b, c], outputs={"fit": DECAY})
    assert isinstance(f, sg.Kernel) and f.outputs["fit"].params == f.params
    tt = np.linspace(0, 5, 50)
    x = np.array([2.0, 0.3, 0.1])
    np.testing.assert_allclose(f.outputs["fit"](x, t=tt), 2 * np.exp(-0.3 * tt) + 0.1,
                               rtol=1e-14)
    # an output that reads only some parameters keeps x's layout (unused ones are skipped)
    g = sg.compile(sg.mean((DECAY - y) ** 2), [a, b, c], outputs={"ct": c * t})
    np.testing.assert_array_equal(g.outputs["ct"](x, t=tt), 0.1 * tt)
    assert g.outputs["ct"].jacobian(x, t=tt)[:, :2].max() == 0.0
    assert sg.compile(sg.mean((DECAY - y) ** 2)).outputs == {}


def test_outputs_of_a_small_fused_classifier():
    """A loss small enough to fuse (kind 'scalar') refused its array outputs: "the output's
    'W' is W[3, 4] but the loss's is W[]"."""
    W, bb = sg.params("Wo", shape=(3, 4)), sg.params("bo", shape=(3,))
    X, Y = sg.data("X", shape=(4,)), sg.data("Y", shape=(3,))
    logits = W @ X + bb
    f = sg.compile(losses.cross_entropy(logits, Y), outputs={"proba": sg.softmax(logits)})
    assert f.kind == "scalar"  # fused
    rng = np.random.default_rng(0)
    x, Xd = rng.standard_normal(15), rng.standard_normal((7, 4))
    z = Xd @ x[:12].reshape(3, 4).T + x[12:]
    want = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(f.outputs["proba"](x, X=Xd), want / want.sum(axis=1,
                                                                            keepdims=True),
                               rtol=1e-14)


def test_outputs_errors():
    w = sg.params("w", shape=(3,))
    X = sg.data("X", shape=(3,))
    loss = sg.mean((X @ w) ** 2)
    with pytest.raises(sg.ProblemError, match=r"output 'p'.*parameter 'u', which the loss"):
        sg.compile(loss, outputs={"p": X @ sg.params("u", shape=(3,))})
    with pytest.raises(sg.ProblemError, match="output 's' must keep the sample axis"):
        sg.compile(loss, outputs={"s": sg.sum(w)})
    with pytest.raises(TypeError, match="outputs= takes a dict"):
        sg.compile(loss, outputs=[X @ w])


def test_a_model_with_one_name_in_two_layouts_says_so():
    """As for a loss: an expression built before re-declaring a name holds the old array."""
    X = sg.data("X", shape=(3,))
    u_old = sg.params("u", shape=(3,))
    u_new = sg.params("u", shape=(2, 3))
    with pytest.raises(sg.ProblemError, match=r"'u' is declared twice with different layouts "
                                              r"\(u\[3\] and u\[2, 3\]\)"):
        sg.compile(X @ u_old + sg.sum(u_new @ X, axis=-1))


def test_data_errors_in_user_terms(small_net, decay):
    x = np.zeros(small_net.n_params)
    with pytest.raises(TypeError, match="missing data array 'X'"):
        small_net(x)
    with pytest.raises(ValueError, match="data array 'X' has size 4 on axis 1"):
        small_net(x, X=np.zeros((5, 4)))
    with pytest.raises(ValueError, match=f"x must be a vector of {small_net.n_params} values"):
        small_net(x[:-1], X=np.zeros((5, 3)))
    bad = np.ones(20)
    bad[13] = np.nan
    with pytest.raises(ValueError, match=r"'t' has a non-finite value \(nan\) at row 13"):
        decay(np.ones(3), t=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        decay(np.ones(3), t=np.ones(3), batch_size=0)
    # no samples: no outputs (not an error, unlike a mean over none)
    assert decay(np.ones(3), t=np.zeros(0)).shape == (0,)
    assert decay.jacobian(np.ones(3), t=np.zeros(0)).shape == (0, 3)


def test_gathered_rows_are_checked():
    U = sg.params("U", shape=(4, 2))
    i = sg.data("i", dtype=int)
    m = sg.compile(sg.sum(U[i] ** 2, axis=0))
    x = np.arange(8.0)
    np.testing.assert_array_equal(m(x, i=np.array([0, 3])), [1.0, 85.0])
    with pytest.raises(ValueError, match=r"index column 'i' has 4 in row 1: U has rows 0\.\.3"):
        m(x, i=np.array([0, 4]))
    # a uint64 2**64-1 is reported as given, as the loss kernels do (it read as -1 here)
    with pytest.raises(ValueError, match=r"has 18446744073709551615 in row 2: U has rows"):
        m(x, i=np.array([0, 1, 2**64 - 1], dtype=np.uint64))


@pytest.mark.slow  # -m slow (4-5 s of compile each, cold; the dense model stays quick)
def test_float32(small_net):
    W1, b1 = sg.params("V1", shape=(5, 3)), sg.params("c1", shape=(5,))
    W2 = sg.params("V2", shape=(2, 5))
    X = sg.data("X", shape=(3,))
    m32 = sg.compile(W2 @ sg.tanh(W1 @ X + b1), dtype="float32")
    rng = np.random.default_rng(3)
    x, Xd = rng.standard_normal(m32.n_params), rng.standard_normal((40, 3))
    out = m32(x, X=Xd)
    assert out.dtype == np.float32 and m32.jacobian(x, X=Xd).dtype == np.float32
    np.testing.assert_allclose(out, small_net(x, X=Xd), rtol=1e-5, atol=1e-5)
    assert "np.float32" in m32.source


def test_generate_writes_a_standalone_model(tmp_path, decay):
    path = sg.generate(DECAY, tmp_path / "decay_model.py", [a, b, c])
    text = path.read_text()
    assert text.startswith("# Generated by symgrad") and "def predict(x, out, dims, c_t):" in text
    assert sg.generate(DECAY, tmp_path / "decay_model.py", [a, b, c]).read_text() == text
    spec = importlib.util.spec_from_file_location("decay_model_gen", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tt, x = np.linspace(0, 3, 11), np.array([1.5, 0.7, -0.2])
    out = np.empty(11)
    mod.predict(x, out, decay.dims, tt)
    np.testing.assert_array_equal(out, decay(x, t=tt))
    J = np.empty((11, 3))
    mod.jacobian(x, J, decay.dims, tt)
    np.testing.assert_array_equal(J, decay.jacobian(x, t=tt))
    assert decay.labels == ("a", "b", "c")
    np.testing.assert_array_equal(decay.pack(a=1.0, b=2.0, c=3.0), [1.0, 2.0, 3.0])


def test_sizes_stay_out_of_the_code():
    Ws = [sg.params("Q", shape=(k, 3)) for k in (4, 7)]
    X = sg.data("X", shape=(3,))
    m4, m7 = (sg.compile(sg.sigmoid(W @ X)) for W in Ws)
    assert m4.path == m7.path  # one cached module serves every size
    out = m7(np.ones(21), X=np.ones((2, 3)))
    np.testing.assert_allclose(out, np.full((2, 7), 1 / (1 + np.exp(-3.0))), rtol=1e-15)


def test_dask_arrays_are_read_chunk_by_chunk(decay):
    da = pytest.importorskip("dask.array")
    tt = np.linspace(0, 10, 1000)
    x = np.array([4.0, 0.45, 0.6])
    out = decay(x, t=da.from_array(tt, chunks=300))
    np.testing.assert_array_equal(out, decay(x, t=tt))
    np.testing.assert_array_equal(decay.jacobian(x, t=da.from_array(tt, chunks=128),
                                                 batch_size=250), decay.jacobian(x, t=tt))
    bad = tt.copy()
    bad[777] = np.nan
    with pytest.raises(ValueError, match=r"'t' has a non-finite value \(nan\) at row 777"):
        decay(x, t=da.from_array(bad, chunks=300))


def test_metrics():
    scores = np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 0, 1, 2])
    assert sg.metrics.accuracy(scores, labels) == 0.5
    np.testing.assert_array_equal(sg.metrics.confusion_matrix(scores, labels),
                                  [[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        sg.metrics.accuracy(scores, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="labels must be 4 integer class numbers"):
        sg.metrics.accuracy(scores, [0.0, 1.0, 2.0, 1.0])


def test_jacobian_by_a_data_array(decay, small_net):
    tt, x = np.linspace(0, 3, 9), np.array([4.0, 0.45, 0.6])
    np.testing.assert_allclose(decay.jacobian(x, wrt="t", t=tt),
                               -x[0] * x[1] * np.exp(-x[1] * tt), rtol=1e-14)
    rng = np.random.default_rng(4)
    xw, Xd = rng.standard_normal(small_net.n_params), rng.standard_normal((7, 3))
    p = small_net.unpack(xw)
    sech2 = 1 - np.tanh(Xd @ p["V1"].T + p["c1"]) ** 2  # (7, 5)
    ref = np.einsum("ok,nk,kd->nod", p["V2"], sech2, p["V1"])  # d out[n, o] / d X[n, d]
    J = small_net.jacobian(xw, wrt="X", X=Xd, batch_size=4)
    assert J.shape == (7, 2, 3)
    np.testing.assert_allclose(J, ref, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="wrt='Y' names no data array of this model"):
        small_net.jacobian(xw, wrt="Y", X=Xd)
    U = sg.params("U", shape=(4, 2))
    i = sg.data("i", dtype=int)
    with pytest.raises(ValueError, match="only per-sample float data arrays"):
        sg.compile(sg.sum(U[i], axis=0)).jacobian(np.ones(8), wrt="i", i=np.array([1]))


def _count_calls(ns: types.SimpleNamespace, names: tuple[str, ...]) -> dict[str, int]:
    """Wrap the functions ``names`` of ``ns`` to count their calls (the returned dict)."""
    calls = dict.fromkeys(names, 0)

    def wrap(name: str, f):
        def counted(*args):
            calls[name] += 1
            return f(*args)
        return counted

    for name in names:
        setattr(ns, name, wrap(name, getattr(ns, name)))
    return calls


def test_jacobian_by_a_data_array_takes_the_cheaper_sweep(small_net):
    """Regression: ``wrt="X"`` ran one forward sweep per entry of X's row (784 for an MNIST
    network's 10 outputs: 0.74 s for 100 samples); with fewer outputs than entries it now makes
    one call that runs the forward pass once and a reverse sweep per output."""
    rng = np.random.default_rng(5)
    Xd = rng.standard_normal((9, 3))
    wide = sg.compile(sg.params("V2", shape=(4, 5)) @ sg.tanh(
        sg.params("V1", shape=(5, 3)) @ sg.data("X", shape=(3,)) + sg.params("c1", shape=(5,))))
    for model, calls_of, sweep in ((small_net, 1, "jac_X"), (wide, 3, "jvp_X")):
        xw = rng.standard_normal(model.n_params)
        p = model.unpack(xw)
        sech2 = 1 - np.tanh(Xd @ p["V1"].T + p["c1"]) ** 2
        ref = np.einsum("ok,nk,kd->nod", p["V2"], sech2, p["V1"])
        saved = model.jit
        model.jit = types.SimpleNamespace(**vars(saved))
        calls = _count_calls(model.jit, ("jac_X", "jvp_X"))
        try:
            J = model.jacobian(xw, wrt="X", X=Xd)
        finally:
            model.jit = saved
        np.testing.assert_allclose(J, ref, rtol=1e-13, atol=1e-15)
        assert calls[sweep] == calls_of and sum(calls.values()) == calls[sweep]


def test_vjp_is_the_jacobian_transposed_times_w(decay, small_net):
    rng = np.random.default_rng(6)
    Xd = rng.standard_normal((11, 3))
    for model, data in ((small_net, {"X": Xd}), (decay, {"t": np.linspace(0.0, 3.0, 11)})):
        x = rng.standard_normal(model.n_params)
        w = rng.standard_normal((11, *model.shape))
        J = model.jacobian(x, **data).reshape(11 * max(1, int(np.prod(model.shape))), -1)
        want = J.T @ w.ravel()
        np.testing.assert_allclose(model.vjp(x, w, **data), want, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(model.vjp(x, w, batch_size=4, **data), want, rtol=1e-13,
                                   atol=1e-14)
    x = rng.standard_normal(small_net.n_params)
    with pytest.raises(ValueError, match=r"w must be numbers of the outputs' shape \(11, 2\)"):
        small_net.vjp(x, np.ones((11, 3)), X=Xd)
    w = np.ones((11, 2))
    w[4, 1] = np.inf
    with pytest.raises(ValueError, match="w has a non-finite value in row 4"):
        small_net.vjp(x, w, X=Xd)


def test_a_model_is_not_a_loss(decay):
    """Forgetting sg.mean used to be refused at compile time; now it is a model, and what trains
    or checks a loss says what to do with it."""
    data = {"t": np.ones(3)}
    for call in (lambda: sg.minimize(decay, np.ones(3), data=data, steps=2),
                 lambda: sg.check_grad(decay, np.ones(3), data=data),
                 lambda: decay.value_and_grad(np.ones(3), **data)):
        with pytest.raises(sg.ProblemError, match=r"keeps the sample axis.*sg\.mean"):
            call()


def test_edge_outputs_data_itself_slices_and_no_parameters():
    X = sg.data("X", shape=(3,))
    Xd = np.arange(6.0).reshape(2, 3)
    ident = sg.compile(X)  # the output is a data array: copied
    np.testing.assert_array_equal(ident(np.empty(0), X=Xd), Xd)
    assert ident.jacobian(np.empty(0), X=Xd).shape == (2, 3, 0)
    w = sg.params("w", shape=(3,))
    part = sg.compile(X[1:] * w[0])  # a trimmed axis in the output's shape
    assert part.shape == (2,) and "# output shape: [N, D0 - 1]" in part.source
    np.testing.assert_array_equal(part(np.array([2.0, 0, 0]), X=Xd), 2 * Xd[:, 1:])


# dense stays quick; gather, window and lse (three more models and losses, 4-5 s each, cold) run
# in the slow set (gathered rows: test_gathered_rows_are_checked; sliced outputs:
# test_edge_outputs_..._slices, both quick).
@pytest.mark.parametrize("case", ["dense", *(pytest.param(c, marks=pytest.mark.slow)
                                            for c in ("gather", "window", "lse"))])
def test_model_agrees_with_the_loss_built_on_it(case):
    """The model's outputs, reduced in NumPy, equal the compiled loss of the same expression
    reduced by symgrad; the Jacobian's rows contract to the loss gradient."""
    rng = np.random.default_rng(5)
    W, b = sg.params("Wq", shape=(4, 3)), sg.params("bq", shape=(4,))
    X = sg.data("Xq", shape=(3,))
    data = {"Xq": rng.standard_normal((9, 3))}
    if case == "dense":
        out = sg.tanh(W @ X + b)
    elif case == "gather":
        i = sg.data("iq", dtype=int)
        out = sg.sigmoid(W[i] * X) + b[1]
        data["iq"] = rng.integers(0, 4, 9)
    elif case == "window":
        out = W[:, 1:] @ X[1:] * b
    else:
        out = sg.logsumexp(W @ X + b, axis=-1) + 0 * b[0]
    model = sg.compile(out)
    loss = sg.compile(sg.mean(sg.sum(out**2, axis=0)) if out.ndim > 1 else sg.mean(out**2),
                      model.params)
    x = rng.standard_normal(model.n_params)
    y = model(x, **data)
    assert y.shape == (9, *model.shape)
    value, grad = loss.value_and_grad(x, **data)
    assert value == pytest.approx(np.mean(np.sum(y.reshape(9, -1)**2, axis=1)), rel=1e-13)
    J = model.jacobian(x, **data).reshape(9, -1, model.n_params)
    np.testing.assert_allclose(2 * np.einsum("no,nop->p", y.reshape(9, -1), J) / 9, grad,
                               rtol=1e-12, atol=1e-14)


def test_jacobian_computes_the_forward_work_once_per_call():
    """The array lowering's Jacobian (issue 22, step 6): the forward values and the tangents'
    coefficients (here every tanh) are computed once, before the columns; each column is then
    the tangent's linear part along one unit direction. Scalar and array parameters in any
    order; the columns equal central differences and contract to the jvp."""
    W, s, b = sg.params("Wj", shape=(3, 2)), sg.params("sj"), sg.params("bj", shape=(3,))
    X = sg.data("Xj", shape=(2,))
    model = sg.compile(s * sg.tanh(W @ X + b) + s**2, [W, s, b])
    body = model.source.split("def jacobian(")[1].split("\n@")[0]
    assert "jvp(" not in body and "math.tanh" in body
    assert "math.tanh" not in body[body.index("for jq in"):]
    rng = np.random.default_rng(11)
    x, Xd = rng.standard_normal(model.n_params), rng.standard_normal((7, 2))
    J = model.jacobian(x, Xj=Xd)
    assert J.shape == (7, 3, 10)
    _assert_columns_are_differences(model, x, J, Xj=Xd)
    v = rng.standard_normal(model.n_params)
    np.testing.assert_allclose(model.jvp(x, v, Xj=Xd), J @ v, rtol=1e-13, atol=1e-14)


def test_vjp_of_no_samples_is_zero():
    # it raised NumPy's "cannot reshape array of size 0" while predict and jacobian took N = 0
    a, b = sg.params("a b")
    t = sg.data("t")
    m = sg.compile(a * t + b)
    g = m.vjp([2.0, 1.0], np.empty(0), t=np.empty(0))
    np.testing.assert_array_equal(g, [0.0, 0.0])
