"""Array losses against two independent oracles.

Each case is written twice: once in array notation (compiled through the array path) and once as
a NumPy reference of one sample, ``ref(xp, P, D)``. With ``xp = numpy`` the reference gives the
value on all samples; with ``xp = SymPy`` (object arrays of scalar parameters and data columns)
the same function builds the unrolled scalar loss, which the scalar path differentiates by an
entirely different engine. Values agree with NumPy to 1e-12; gradients and Hessian-vector
products with the unrolled scalar kernels to 1e-12; analytic cases pass the complex-step check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.lang import losses

# these tests are of the array code: small losses do not fuse into one sample loop here
pytestmark = pytest.mark.usefixtures("array_code")

RTOL = 1e-12


class NP:
    """NumPy side of a reference (all samples at once, axis 0 is the sample axis)."""

    tanh, exp, log = np.tanh, np.exp, np.log

    @staticmethod
    def relu(z):
        return np.maximum(z, 0.0)

    @staticmethod
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    @staticmethod
    def softplus(z):
        return np.logaddexp(0.0, z)

    @staticmethod
    def lse(z):
        m = z.max(axis=-1, keepdims=True)
        return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]

    @staticmethod
    def max(z):
        return z.max(axis=-1)


def _vec(f):
    return np.vectorize(f, otypes=[object])


class SYM:
    """SymPy side: object arrays of scalar symbols, one sample (axis 0 of length 1)."""

    tanh, exp, log = _vec(sp.tanh), _vec(sp.exp), _vec(sp.log)
    relu, sigmoid, softplus = _vec(sg.relu), _vec(sg.sigmoid), _vec(sg.softplus)

    @staticmethod
    def lse(z):
        return np.array([sg.logsumexp(*row) for row in z.reshape(-1, z.shape[-1])],
                        dtype=object).reshape(z.shape[:-1])

    @staticmethod
    def max(z):
        return np.array([sp.Max(*row) for row in z.reshape(-1, z.shape[-1])],
                        dtype=object).reshape(z.shape[:-1])


@dataclass
class Case:
    name: str
    params: dict[str, tuple]            # name -> shape
    data: dict[str, tuple]              # name -> per-sample shape (() for a scalar column)
    array: Callable                     # (P, D) of symgrad arrays -> loss
    ref: Callable                       # (xp, P, D) -> (per-sample losses, penalty)
    analytic: bool = True


CASES = [
    Case("mlp_tanh", {"W1": (2, 2), "b1": (2,), "W2": (2, 2), "b2": (2,)}, {"X": (2,), "Y": (2,)},
         lambda P, D: losses.cross_entropy(P["W2"] @ sg.tanh(P["W1"] @ D["X"] + P["b1"])
                                           + P["b2"], D["Y"])
         + losses.l2(P["W1"], P["W2"], weight=1e-2),
         lambda xp, P, D: (xp.lse(_logits(xp, P, D)) - (D["Y"] * _logits(xp, P, D)).sum(-1),
                           1e-2 * ((P["W1"] ** 2).sum() + (P["W2"] ** 2).sum()))),
    Case("mlp_relu_max", {"W1": (3, 2), "b1": (3,), "W2": (2, 3)}, {"X": (2,), "y": ()},
         lambda P, D: sg.mean((sg.max(P["W2"] @ sg.relu(P["W1"] @ D["X"] + P["b1"]), axis=0)
                               - D["y"]) ** 2),
         lambda xp, P, D: ((xp.max(xp.relu(D["X"] @ P["W1"].T + P["b1"]) @ P["W2"].T)
                            - D["y"]) ** 2, 0),
         analytic=False),
    Case("logistic", {"w": (4,), "b": ()}, {"X": (4,), "y": ()},
         lambda P, D: losses.binary_cross_entropy(D["X"] @ P["w"] + P["b"], D["y"])
         + 0.1 * P["b"] ** 2,
         lambda xp, P, D: (xp.softplus(D["X"] @ P["w"] + P["b"])
                           - D["y"] * (D["X"] @ P["w"] + P["b"]), 0.1 * P["b"] ** 2)),
    Case("factor_transpose_einsum", {"U": (3, 2), "V": (2, 2), "c": (3,)}, {"X": (3,)},
         lambda P, D: sg.mean(sg.exp(0.1 * sg.einsum("ik,jk->ij", P["U"], P["V"]).T @ D["X"]))
         + sg.sum((P["U"] @ P["V"].T) ** 2) / 10 + sg.sum(P["U"][0, 1] * P["c"]),
         lambda xp, P, D: (xp.exp(0.1 * (D["X"] @ (P["U"] @ P["V"].T))).mean(-1),
                           ((P["U"] @ P["V"].T) ** 2).sum() / 10 + (P["U"][0, 1] * P["c"]).sum())),
    Case("bilinear_softmax_element", {"A": (2, 2), "s": ()}, {"X": (2,), "t": ()},
         lambda P, D: sg.mean(sg.log(1 + (D["X"] @ P["A"] @ D["X"]) ** 2)
                              + sg.softmax(P["A"] @ D["X"] * P["s"])[1] * D["t"]
                              + sg.mean(sg.sigmoid(P["A"]), axis=1)[1]),
         lambda xp, P, D: (xp.log(1 + ((D["X"] @ P["A"]) * D["X"]).sum(-1) ** 2)
                           + _softmax1(xp, (D["X"] @ P["A"].T) * P["s"]) * D["t"]
                           + xp.sigmoid(P["A"][1]).sum() / 2, 0)),
]


def _logits(xp, P, D):
    return xp.tanh(D["X"] @ P["W1"].T + P["b1"]) @ P["W2"].T + P["b2"]


def _softmax1(xp, z):
    return xp.exp(z[..., 1] - xp.lse(z))


def _sample_data(case: Case, n: int, rng) -> dict[str, np.ndarray]:
    out = {}
    for k, s in case.data.items():
        if k == "Y":
            out[k] = np.eye(s[0])[rng.integers(0, s[0], n)]
        else:
            out[k] = rng.standard_normal((n, *s))
    return out


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def built(request):
    case: Case = request.param
    P = {k: sg.params(k, shape=s) if s else sg.params(k) for k, s in case.params.items()}
    D = {k: sg.data(k, shape=s) if s else sg.data(k) for k, s in case.data.items()}
    f = sg.compile(case.array(P, D), list(P.values()))
    # the unrolled scalar form, from the same reference evaluated on SymPy symbols
    Ps = {k: (np.array(sg.params(" ".join(f"{k}_{'_'.join(map(str, i))}"
                                          for i in np.ndindex(s))), dtype=object).reshape(s)
              if s else sg.params(f"{k}_")) for k, s in case.params.items()}
    Ds = {k: (np.array([sg.data(f"{k}_{j}") for j in range(s[0])], dtype=object)[None]
              if s else np.array([sg.data(f"{k}_")], dtype=object)) for k, s in case.data.items()}
    per, pen = case.ref(SYM, Ps, Ds)
    flat = [p for k in case.params for p in np.atleast_1d(np.asarray(Ps[k], dtype=object)).ravel()]
    fs = sg.compile(sg.mean(per[0]) + pen, flat)
    return case, f, fs


def _scalar_data(case: Case, data: dict) -> dict:
    out = {}
    for k, s in case.data.items():
        if s:
            out.update({f"{k}_{j}": data[k][:, j] for j in range(s[0])})
        else:
            out[f"{k}_"] = data[k]
    return out


def _point(f, rng) -> np.ndarray:
    return rng.standard_normal(f.n_params) * 0.7


def test_value_matches_numpy(built):
    case, f, _ = built
    rng = np.random.default_rng(1)
    data = _sample_data(case, 23, rng)
    x = _point(f, rng)
    P = f.unpack(x)
    per, pen = case.ref(NP, P, data)
    np.testing.assert_allclose(f.value(x, **data), np.mean(per) + pen, rtol=RTOL)


@pytest.mark.slow  # an unrolled-scalar reference: compiles a second kernel per case
def test_grad_and_hvp_match_unrolled_scalar_kernel(built):
    case, f, fs = built
    rng = np.random.default_rng(2)
    data = _sample_data(case, 23, rng)
    x, v = _point(f, rng), rng.standard_normal(f.n_params)
    sdata = _scalar_data(case, data)
    val, g = f.value_and_grad(x, **data)
    val_s, g_s = fs.value_and_grad(x, **sdata)
    np.testing.assert_allclose(val, val_s, rtol=RTOL)
    np.testing.assert_allclose(g, g_s, rtol=RTOL, atol=RTOL * np.abs(g_s).max())
    hv, hv_s = f.hvp(x, v, **data), fs.hvp(x, v, **sdata)
    np.testing.assert_allclose(hv, hv_s, rtol=1e-11, atol=1e-11 * np.abs(hv_s).max())
    H = f.hessian(x, **data)
    np.testing.assert_allclose(H @ v, hv, rtol=1e-10, atol=1e-10 * np.abs(hv).max())
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-12 * np.abs(H).max())


# the complex twins of the analytic cases (2-6 s of compile each, cold) run in the slow set; the
# quick set keeps the complex step on a vector kernel (test_vectors.py) and on a fused array
# loss (test_mixed_sums.py)
@pytest.mark.slow
@pytest.mark.parametrize("built", CASES, indirect=True, ids=lambda c: c.name)
def test_complex_step_check(built):
    case, f, _ = built
    assert f.analytic == case.analytic
    if not case.analytic:
        with pytest.raises(TypeError, match="analytic"):
            f.value_complex(np.zeros(f.n_params))
        return
    rng = np.random.default_rng(3)
    data = _sample_data(case, 17, rng)
    chk = sg.check_grad(f, _point(f, rng), data=data, method="complex")
    assert chk.ok and chk.max_rel_err < 1e-12, chk


def test_batches_select_rows(built):
    case, f, _ = built
    rng = np.random.default_rng(4)
    data = _sample_data(case, 30, rng)
    x = _point(f, rng)
    idx = np.array([3, 0, 29, 7, 7])
    sub = {k: a[idx] for k, a in data.items()}
    np.testing.assert_allclose(f.value_and_grad(x, batch=idx, **data)[1],
                               f.value_and_grad(x, **sub)[1], rtol=RTOL)
    mask = np.zeros(30, bool)
    mask[5:12] = True
    np.testing.assert_allclose(f.value(x, batch=mask, **data), f.value(x, batch=slice(5, 12),
                                                                        **data), rtol=RTOL)
    with pytest.raises(IndexError, match=r"batch indices must lie in \[-30, 30\)"):
        f.value(x, batch=np.array([0, 30]), **data)


def test_hessian_sweeps_once_and_matches_gradient_differences():
    """An array loss's Hessian (issue 22, step 6) computes the forward and reverse sweeps and the
    tangents' coefficients (every tanh) once, then per column only the part of the HVP that is
    linear in the direction; it was one whole HVP per column. Its columns equal central
    differences of the gradient, ``H @ v`` equals the HVP, and H is symmetric. A scalar
    parameter sits among the arrays (its direction is read inside the loop)."""
    W1, b1 = sg.params("Wh", shape=(4, 3)), sg.params("bh", shape=(4,))
    w2, c = sg.params("wh", shape=(4,)), sg.params("ch")
    X, y = sg.data("Xh", shape=(3,)), sg.data("yh")
    f = sg.compile(sg.mean((w2 @ sg.tanh(W1 @ X + b1) + c - y) ** 2) + 0.1 * c**2,
                   [W1, b1, w2, c])
    body = f.source.split("def _hessian(")[1].split("\n@")[0]
    assert "_hvp(" not in body and "math.tanh" in body
    assert "math.tanh" not in body[body.index("for jq in"):]
    rng = np.random.default_rng(8)
    data = {"Xh": rng.standard_normal((11, 3)), "yh": rng.standard_normal(11)}
    x, v = rng.standard_normal(f.n_params), rng.standard_normal(f.n_params)
    H = f.hessian(x, **data)
    assert H.shape == (21, 21) and np.array_equal(H, H.T)
    h = 1e-6
    for j in range(f.n_params):
        e = np.zeros_like(x)
        e[j] = h
        fd = (f.grad(x + e, **data) - f.grad(x - e, **data)) / (2 * h)
        np.testing.assert_allclose(H[:, j], fd, atol=1e-7)
    np.testing.assert_allclose(H @ v, f.hvp(x, v, **data), rtol=1e-12, atol=1e-13)


def test_gradient_reads_the_stored_activation_instead_of_recomputing_it():
    """Reverse mode writes tanh's adjoint as ``1 - tanh(z)**2`` of the layer's input; the
    forward pass has stored ``tanh(z)`` for the next product, so the gradient reads it
    (``passes/reuse.py``): one tanh per element in ``value_and_grad`` (it was two: 1.8x the
    time of a 16-32-3 tanh MLP's call), one in ``hvp`` and one in ``hessian``."""
    W1, W2 = sg.params("Wr1", shape=(5, 3)), sg.params("Wr2", shape=(2, 5))
    X, Y = sg.data("Xr", shape=(3,)), sg.data("Yr", shape=(2,))
    f = sg.compile(sg.mean(sg.sum((W2 @ sg.tanh(W1 @ X) - Y) ** 2, axis=0)))
    for name in ("_value_and_grad", "_hvp", "_hessian"):
        body = f.source.split(f"def {name}(")[1].split("\n@")[0]
        assert body.count("math.tanh(") == 1, name
    rng = np.random.default_rng(9)
    data = {"Xr": rng.standard_normal((6, 3)), "Yr": rng.standard_normal((6, 2))}
    x = rng.standard_normal(f.n_params)
    p = f.unpack(x)
    h = np.tanh(data["Xr"] @ p["Wr1"].T)
    d = 2 * (h @ p["Wr2"].T - data["Yr"]) / 6
    dz = (d @ p["Wr2"]) * (1 - h**2)
    value, g = f.value_and_grad(x, **data)
    assert value == pytest.approx(np.mean(np.sum((h @ p["Wr2"].T - data["Yr"]) ** 2, axis=1)),
                                  rel=1e-13)
    np.testing.assert_allclose(g, np.concatenate([(dz.T @ data["Xr"]).ravel(),
                                                  (d.T @ h).ravel()]), rtol=1e-12, atol=1e-15)
