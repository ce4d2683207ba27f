"""Array losses: the user's face (errors, packing, sizes, float32, generate, SciPy, training)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad import optim
from symgrad.build.array import array_source
from symgrad.lang import losses

# these tests are of the array code: small losses do not fuse into one sample loop here
pytestmark = pytest.mark.usefixtures("array_code")

D, H, K = 3, 5, 3


def _net(d=D, h=H, k=K):
    W1, b1 = sg.params("W1", shape=(h, d)), sg.params("b1", shape=(h,))
    W2, b2 = sg.params("W2", shape=(k, h)), sg.params("b2", shape=(k,))
    X, Y = sg.data("X", shape=(d,)), sg.data("Y", shape=(k,))
    return losses.cross_entropy(W2 @ sg.relu(W1 @ X + b1) + b2, Y), [W1, b1, W2, b2]


@pytest.fixture(scope="module")
def net():
    loss, params = _net()
    return sg.compile(loss, params)


@pytest.fixture(scope="module")
def rings():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, D))
    cls = np.digitize(np.linalg.norm(X, axis=1), [1.2, 1.9])
    return X, np.eye(K)[cls], cls


def test_sizes_do_not_enter_the_code():
    small = array_source(*_net(3, 5, 3), None, "x")[1]
    big = array_source(*_net(784, 512, 10), None, "x")[1]
    assert small == big
    assert "784" not in big and "512" not in big
    assert big.count("    _gemm(") >= 4  # two products forward, two weight gradients back


@pytest.mark.slow  # quick: test_gemm.py::test_products_never_copy_their_data_operand
def test_gemm_reads_every_layout(net, rings):
    """The products go to BLAS through the module's own ``_gemm``: data in Fortran order or as a
    strided view (with no unit-stride axis: copied, the one case) give the C-ordered result."""
    X, Y, _ = rings
    x = net.init(3)
    dims, Xc, Yc = net.data_args({"X": X, "Y": Y})
    g = np.empty_like(x)
    want = net.jit.value_and_grad(x, g, dims, Xc, Yc), g.copy()
    wide = np.zeros((X.shape[0], 2 * D))
    wide[:, ::2] = X
    for Xl in (np.asfortranarray(Xc), wide[:, ::2]):
        got = net.jit.value_and_grad(x, g, dims, Xl, Yc)
        assert got == pytest.approx(want[0], rel=1e-14)
        np.testing.assert_allclose(g, want[1], rtol=1e-13, atol=1e-15)


def test_layout_pack_unpack(net):
    assert net.params == ("W1", "b1", "W2", "b2")
    assert net.shapes == {"W1": (H, D), "b1": (H,), "W2": (K, H), "b2": (K,)}
    assert net.n_params == H * D + H + K * H + K
    x = np.arange(net.n_params, dtype=float)
    views = net.unpack(x)
    assert views["W1"][1, 0] == D and views["b1"][0] == H * D
    np.testing.assert_array_equal(net.pack(**views), x)
    views["b2"][:] = -1.0  # views write through
    assert x[-1] == -1.0
    with pytest.raises(ValueError, match="W1 must have shape"):
        net.pack(**{**views, "W1": np.zeros((D, H))})
    with pytest.raises(TypeError, match="missing b2"):
        net.pack(W1=views["W1"], b1=views["b1"], W2=views["W2"])


def test_formulas_show_one_gemm_per_weight(net):
    text = net.formulas()
    assert "dW1 = einsum('#i,#k->ik'" in text and ", X)" in text.split("dW1 = ")[1]
    assert "Heaviside" in text  # relu'(0) from the kink policy


def test_shape_errors_name_the_arrays():
    W, b = sg.params("W", shape=(3, 4)), sg.params("b", shape=(4,))
    X = sg.data("X", shape=(5,))
    with pytest.raises(sg.ShapeError, match=r"W\[3, 4\] @ X\[N, 5\].*\(4\).*\(5\)"):
        W @ X
    Z = sg.data("Z", shape=(4,))
    with pytest.raises(sg.ShapeError, match=r"b\[4\].*size 4 against 3"):
        W @ Z + b
    with pytest.raises(sg.ShapeError, match="index 3 is out of range for axis 0 of W"):
        W[3, 0]
    with pytest.raises(sg.ShapeError, match="axis 2 is out of range"):
        sg.sum(W, axis=2)
    assert isinstance(sg.compile(W @ Z), sg.ModelKernel)  # keeps the sample axis: a model
    with pytest.raises(sg.ProblemError, match=r"must be a scalar.*\(3, 4\).*sg.sum"):
        sg.compile(W * 2)
    with pytest.raises(sg.ProblemError, match="'W' is declared twice with different layouts"):
        sg.compile(sg.sum(W) + sg.sum(sg.params("W", shape=(2,))))
    with pytest.raises(TypeError, match="SymPy Matrix cannot be mixed"):
        W @ __import__("sympy").Matrix([1, 2, 3, 4])


def test_data_errors_at_call_time(net, rings):
    X, Y, _ = rings
    x = net.init(0)
    with pytest.raises(ValueError, match="data array 'X' has size 4 on axis 1; the loss needs 3"):
        net.value(x, X=np.zeros((10, 4)), Y=Y[:10])
    with pytest.raises(ValueError, match="'Y' has 9 samples but 'X' has 10"):
        net.value(x, X=X[:10], Y=Y[:9])
    with pytest.raises(TypeError, match="missing data array 'Y'"):
        net.value(x, X=X)
    with pytest.raises(ValueError, match="x must be a vector of 38 values"):
        net.value(x[:-1], X=X, Y=Y)
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="'X' has a non-finite value \\(nan\\) at row 7, entry 1"):
        net.value(x, X=bad, Y=Y)
    g = np.empty_like(x)
    with pytest.raises(ValueError, match="out overlaps x"):
        net.value_and_grad(x, x, X=X, Y=Y)
    with pytest.raises(ValueError, match="out overlaps v"):
        net.hvp(x, g, g, X=X, Y=Y)


def test_minibatch_training_and_checks(net, rings):
    X, Y, cls = rings
    res = sg.minimize(net, net.init(seed=1), data={"X": X, "Y": Y}, batch_size=32, epochs=60,
                      optimizer=optim.adam(lr=0.02), seed=0)
    assert res.status == "completed"
    p = net.unpack(res.x)
    logits = np.maximum(X @ p["W1"].T + p["b1"], 0) @ p["W2"].T + p["b2"]
    assert (logits.argmax(1) == cls).mean() > 0.9
    # random-direction check of the relu network (finite differences in a few directions)
    chk = sg.check_grad(net, res.x, data={"X": X[:50], "Y": Y[:50]}, directions=4, seed=0)
    assert chk.max_rel_err < 1e-5, chk


@pytest.mark.slow  # -m slow (5-6 s of compile, cold; test_arrays_float32 keeps float32 quick)
def test_float32_stays_float32():
    loss, params = _net()
    f32 = sg.compile(loss, params, dtype="float32")
    f64 = sg.compile(loss, params)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, D))
    Y = np.eye(K)[rng.integers(0, K, 20)]
    x = f64.init(0) + 0.1
    v32, g32 = f32.value_and_grad(x, X=X, Y=Y)
    v64, g64 = f64.value_and_grad(x, X=X, Y=Y)
    assert g32.dtype == np.float32 and f32.unpack(x)["W1"].dtype == np.float32
    assert abs(v32 - v64) < 1e-5 * abs(v64)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)
    assert "DTYPE = 'float32'" in f32.source and "np.float32(" in f32.source
    assert not f32.analytic
    with pytest.raises(ValueError, match=r"float32.*no sum over data samples"):
        sg.compile(sg.params("q") ** 2, dtype="float32")


@pytest.mark.slow  # -m slow (5-6 s of compile, cold; test_arrays_float32 keeps float32 quick)
def test_scipy_newton_cg_on_logistic_regression():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(3)
    P = 6
    w, b = sg.params("w", shape=(P,)), sg.params("b")
    X, y = sg.data("X", shape=(P,)), sg.data("y")
    f = sg.compile(losses.binary_cross_entropy(X @ w + b, y) + losses.l2(w, weight=1e-2))
    Xd = rng.standard_normal((300, P))
    yd = (Xd @ rng.standard_normal(P) + 0.3 * rng.standard_normal(300) > 0).astype(float)
    obj = sg.scipy_objective(f, {"X": Xd, "y": yd})
    r = scipy_optimize.minimize(obj.fun, np.zeros(P + 1), jac=obj.jac, hessp=obj.hessp,
                                method="Newton-CG", options={"xtol": 1e-10})
    assert r.success and np.linalg.norm(f.grad(r.x, X=Xd, y=yd)) < 1e-7


def test_generated_module_runs_standalone(tmp_path):
    loss, params = _net()
    path = sg.generate(loss, tmp_path / "net_loss.py", params)
    f = sg.compile(loss, params)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((9, D))
    Y = np.eye(K)[rng.integers(0, K, 9)]
    x = f.init(2)
    want = f.value(x, X=X, Y=Y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    script = (
        "import sys, numpy as np\n"
        "sys.modules['sympy'] = None; sys.modules['symgrad'] = None\n"
        "import net_loss as m\n"
        "x, X, Y = (np.load(n + '.npy') for n in 'x X Y'.split())\n"
        f"g = np.empty_like(x)\n"
        f"print(repr(m.value_and_grad(x, g, np.array({list(f.dims)}), X, Y, None)))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert float(out) == pytest.approx(want, rel=1e-14)
    assert path.read_text().startswith("# Generated by symgrad, do not edit.")


def test_names_never_clash_with_the_generated_code():
    # non-ASCII names that sanitise alike, and names of the generated code's own variables
    a, b = sg.params("é", shape=(2,)), sg.params("è", shape=(2,))
    x, n = sg.data("x", shape=(2,)), sg.data("n")
    acc, dims = sg.params("acc"), sg.params("dims", shape=(2,))
    f = sg.compile(sg.mean((x @ a + 2 * (x @ b) - n) ** 2) + acc**2 + sg.sum(dims**2))
    X = np.array([[1.0, 2.0], [3.0, -1.0]])
    N = np.array([0.5, 1.0])
    p = {"é": np.array([0.1, 0.2]), "è": np.array([-0.3, 0.4]), "acc": 1.5,
         "dims": np.array([1.0, 2.0])}
    x0 = f.pack(**p)
    want = np.mean((X @ p["é"] + 2 * X @ p["è"] - N) ** 2) + 1.5**2 + 5.0
    assert f.value(x0, x=X, n=N) == pytest.approx(want, rel=1e-14)


def test_array_kernels_train_alike_in_either_loop():
    """compiled=None picks a loop by readiness and run length (symgrad.train.run); the numbers
    are the same in both."""
    w = sg.params("w", shape=(2,))
    f = sg.compile(sg.sum((w - 1.0) ** 2))
    kw = dict(optimizer=optim.sgd(lr=0.1), steps=2500)
    py = sg.minimize(f, np.zeros(2), compiled=False, **kw)
    auto = sg.minimize(f, np.zeros(2), **kw)
    c = sg.minimize(f, np.zeros(2), compiled=True, **kw)
    assert c.compiled and not py.compiled and np.allclose(py.x, 1.0)
    np.testing.assert_allclose(auto.x, py.x, rtol=1e-12)
    np.testing.assert_allclose(c.x, py.x, rtol=1e-12)


def test_max_of_several_arrays_is_element_wise():
    """sg.max(A, B, c) compares element by element with broadcasting (it was a SympifyError);
    a tie shares the derivative as Max's chain does, on the array code and fused."""
    A, B = sg.params("A", shape=(3,)), sg.params("B", shape=(3,))
    c = sg.params("c")
    loss = sg.sum(sg.max(A, B, c) ** 2)
    x = np.array([1.0, -2.0, 0.5, 0.0, -1.0, 0.5, 0.25])  # A, B, c: a tie at entry 2
    a, b, cc = x[:3], x[3:6], x[6]
    m = np.maximum(np.maximum(a, b), cc)
    for f in (sg.compile(loss), sg.compile(loss, fuse=True)):
        v, g = f.value_and_grad(x)
        assert v == pytest.approx(np.sum(m**2), rel=1e-15)
        np.testing.assert_allclose(g[:3], 2 * m * np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
                                   * (np.maximum(a, b) > cc), rtol=1e-15)
        np.testing.assert_allclose(g[:6][[2, 5]], [0.5, 0.5])  # A[2] == B[2]: half each
    with pytest.raises(TypeError, match="several arrays are compared element by element"):
        sg.max(A, B, axis=0)
