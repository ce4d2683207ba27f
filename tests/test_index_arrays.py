"""Windows (shifted slices with exact boundaries) and gathers by integer data columns.

Oracles: NumPy array slicing for grid energies, ``np.add.at`` for gathered parameters, and the
complex step of those NumPy references for gradients and Hessian-vector products (exact to
rounding, independent of symgrad's derivative engine).
"""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.build.array import array_source

RTOL = 1e-12
EPS = 1e-2


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _cgrad(fun, x, v=None):
    """Gradient (or directional derivative along v) of a NumPy function by the complex step."""
    h = 1e-30
    if v is not None:
        return fun(x + 1j * h * v).imag / h
    return np.array([fun(x + 1j * h * e).imag / h for e in np.eye(x.size)])


# -- grid energies ----------------------------------------------------------------------------
def _grid_loss(H, W):
    u = sg.params("u", shape=(H, W))
    f = sg.data("f", shape=(H, W), samples=False)
    tik = sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2)
    tv = sg.sum(sg.sqrt((u[1:, :-1] - u[:-1, :-1]) ** 2 + (u[:-1, 1:] - u[:-1, :-1]) ** 2
                        + EPS ** 2))
    return 0.5 * sg.sum((u - f) ** 2) + 0.3 * tik + 0.2 * tv


def _grid_ref(x, F):
    U = x.reshape(F.shape)
    tik = ((U[1:] - U[:-1]) ** 2).sum() + ((U[:, 1:] - U[:, :-1]) ** 2).sum()
    dx, dy = U[1:, :-1] - U[:-1, :-1], U[:-1, 1:] - U[:-1, :-1]
    return 0.5 * ((U - F) ** 2).sum() + 0.3 * tik + 0.2 * np.sqrt(dx**2 + dy**2 + EPS**2).sum()


@pytest.fixture(scope="module")
def grid():
    return sg.compile(_grid_loss(12, 9))


def test_grid_energy_matches_numpy_slicing(grid):
    rng = np.random.default_rng(0)
    F = rng.standard_normal((12, 9))
    x = rng.standard_normal(grid.n_params)
    v = rng.standard_normal(grid.n_params)
    val, g = grid.value_and_grad(x, f=F)
    assert abs(val - _grid_ref(x, F)) <= RTOL * abs(val)
    assert _rel(g, _cgrad(lambda z: _grid_ref(z, F), x)) <= RTOL
    assert _rel(grid.hvp(x, v, f=F), _cgrad(lambda z: grid_grad_ref(z, F), x, v)) <= 1e-10


def grid_grad_ref(x, F):
    """The NumPy gradient of the grid energy (analytic: the complex step of it is the HVP)."""
    U = x.reshape(F.shape)
    G = U - F
    for d, lo, hi in ((U[1:] - U[:-1], (slice(1, None),), (slice(None, -1),)),
                      (U[:, 1:] - U[:, :-1], (slice(None), slice(1, None)),
                       (slice(None), slice(None, -1)))):
        G[lo] += 0.6 * d
        G[hi] -= 0.6 * d
    dx, dy = U[1:, :-1] - U[:-1, :-1], U[:-1, 1:] - U[:-1, :-1]
    s = 0.2 / np.sqrt(dx**2 + dy**2 + EPS**2)
    G[1:, :-1] += s * dx
    G[:-1, 1:] += s * dy
    G[:-1, :-1] -= s * (dx + dy)
    return G.ravel()


def test_grid_gradient_reference_is_right(grid):
    rng = np.random.default_rng(1)
    F = rng.standard_normal((12, 9))
    x = rng.standard_normal(grid.n_params)
    assert _rel(grid_grad_ref(x, F), _cgrad(lambda z: _grid_ref(z, F), x)) <= 1e-13


def test_grid_module_is_one_text_for_every_size():
    a = array_source(_grid_loss(8, 8), None, None, "x")[1]
    b = array_source(_grid_loss(512, 300), None, None, "x")[1]
    assert a == b and "512" not in b
    # the gradient is one loop over the grid in gather form: no scattered writes
    vg = b[b.index("def _value_and_grad"):b.index("def _hvp")]
    assert "+=" not in vg.split("t4 = g[")[-1] if "t4 = g[" in vg else True
    assert vg.count("np.zeros(") == 0 and vg.count("np.empty(") == 0


# -- gathers ------------------------------------------------------------------------------------
M, NN, K, S = 13, 9, 3, 200


@pytest.fixture(scope="module")
def mf():
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    loss = sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2) + 0.01 * (sg.sum(U**2)
                                                                      + sg.sum(V[:, 1:] ** 2))
    return sg.compile(loss, [U, V])


def _mf_data(seed, n=S):
    rng = np.random.default_rng(seed)
    return {"i": rng.integers(0, M, n), "j": rng.integers(0, NN, n),
            "r": rng.standard_normal(n)}


def _mf_ref(x, d):
    U, V = x[:M * K].reshape(M, K), x[M * K:].reshape(NN, K)
    e = (U[d["i"]] * V[d["j"]]).sum(1) - d["r"]
    return (e**2).mean() + 0.01 * ((U**2).sum() + (V[:, 1:] ** 2).sum())


def _mf_grad_ref(x, d):
    U, V = x[:M * K].reshape(M, K), x[M * K:].reshape(NN, K)
    e = 2 * ((U[d["i"]] * V[d["j"]]).sum(1) - d["r"]) / d["r"].size
    gU, gV = 0.02 * U, 0.02 * V
    gV[:, 0] = 0
    gU, gV = gU.astype(np.result_type(x)), gV.astype(np.result_type(x))
    np.add.at(gU, d["i"], e[:, None] * V[d["j"]])
    np.add.at(gV, d["j"], e[:, None] * U[d["i"]])
    return np.concatenate([gU.ravel(), gV.ravel()])


def test_gathers_match_numpy_add_at(mf):
    d = _mf_data(2)
    rng = np.random.default_rng(3)
    x, v = rng.standard_normal(mf.n_params), rng.standard_normal(mf.n_params)
    val, g = mf.value_and_grad(x, **d)
    assert abs(val - _mf_ref(x, d)) <= RTOL * abs(val)
    assert _rel(g, _mf_grad_ref(x, d)) <= RTOL
    assert _rel(g, _cgrad(lambda z: _mf_ref(z, d), x)) <= 1e-12
    assert _rel(mf.hvp(x, v, **d), _cgrad(lambda z: _mf_grad_ref(z, d), x, v)) <= 1e-12


def test_gathers_with_batches(mf):
    d = _mf_data(4)
    x = np.random.default_rng(5).standard_normal(mf.n_params)
    idx = np.array([5, 0, 199, 7, 7])
    sub = {k: a[idx] for k, a in d.items()}
    np.testing.assert_allclose(mf.grad(x, batch=idx, **d), _mf_grad_ref(x, sub), rtol=1e-12,
                               atol=1e-14)


def test_index_errors_name_the_row(mf):
    d = _mf_data(6)
    x = np.zeros(mf.n_params)
    d["j"][17] = NN
    with pytest.raises(ValueError, match=r"index column 'j' has 9 in row 17: V has rows 0\.\.8"):
        mf.value(x, **d)
    d = _mf_data(6)
    with pytest.raises(TypeError, match="index column 'i' must hold integers"):
        mf.value(x, **{**d, "i": d["i"].astype(float)})
    # the standalone module checks the rows itself
    args = mf.data_args(d)
    bad = args[1].copy()
    bad[3] = -1
    with pytest.raises(ValueError, match="index column i: a row is out of range for U"):
        mf.jit.value(x, args[0], bad, *args[2:])


def test_window_and_gather_errors():
    u = sg.params("u", shape=(4, 5))
    t = sg.data("t")
    with pytest.raises(sg.ShapeError, match="only non-empty step-1 slices"):
        u[::2, :]
    with pytest.raises(sg.ShapeError, match="index 4 is out of range for axis 0"):
        u[4, 1]
    with pytest.raises(sg.ShapeError, match=r"integer data column \(sg.data\('i', dtype=int\)"):
        u[t]
    i = sg.index("i")
    with pytest.raises(sg.ShapeError, match=r"written as slices: u\[1:, :\]"):
        u[i + 1, 2]
    with pytest.raises(ValueError, match="dtype=int declares integer per-sample columns"):
        sg.data("k", shape=(2,), dtype=int)
