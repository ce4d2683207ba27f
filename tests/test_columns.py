"""Derivative matrices column by column (issue 22, step 6): an array loss's ``hessian`` and a
model's ``jacobian`` compute the direction-free work once and then each column's linear part
(``symgrad/backend/numba/columns.py``, ``symgrad/passes/hoist.py``), with products along a unit
direction printed as selections. ``hvp`` and ``jvp`` still run the whole tangent graph, unsplit,
so stacking them column by column is an independent reference for every node kind the split
meets: kinks, windows, gathers, log-sum-exp and max reductions, transposed and tensor products,
scalar parameters and parameters that an output does not read, and float32."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import symgrad as sg

# these tests are of the array code: small losses do not fuse into one sample loop here
pytestmark = pytest.mark.usefixtures("array_code")


def _case(name: str):
    """``(output per sample, params in order, data, loss-only term, its params)``."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # str hash() varies per process
    X = sg.data("Xc", shape=(3,))
    data = {"Xc": rng.standard_normal((13, 3))}
    W, b = sg.params("Wc", shape=(4, 3)), sg.params("bc", shape=(4,))
    if name == "kinks":
        V = sg.params("Vc", shape=(2, 4))
        return V @ sg.relu(W @ X + b) + sg.abs(W @ X)[1:3], [W, b, V], data, 0, []
    if name == "window":
        return W[:, 1:] @ X[1:] * b + sg.sigmoid(W[:, :2] @ X[:2]), [W, b], data, 0, []
    if name == "gather":
        i = sg.data("ic", dtype=int)
        data["ic"] = rng.integers(0, 4, 13)
        return sg.tanh(W[i] * X) * b[1] + W[i], [W, b], data, 0, []
    if name == "reductions":
        out = sg.logsumexp(W @ X + b, axis=-1) + sg.max(sg.sin(W @ X), axis=-1)
        return out, [W, b], data, 0, []
    if name == "transposed":
        T = sg.params("Tc", shape=(3, 4))
        return sg.softplus(X @ T) * sg.tanh(T.T @ X) + X @ W.T * b, [T, W, b], data, 0, []
    if name == "tensor":
        G = sg.params("Gc", shape=(2, 3, 3))
        out = sg.tanh(sg.einsum("ijk,k->ij", G, X)) * sg.exp(-(X @ X) / 4)
        return out, [G], data, 0, []
    if name == "scalars":
        s, c, U = sg.params("sc"), sg.params("cc"), sg.params("Uc", shape=(2,))
        # U is in the loss only: its Hessian blocks against W, s and c are zero (no tangent)
        return s * sg.tanh(W @ X) + s**2 * c, [W, s, c], data, sg.sum(sg.cosh(U)), [U]
    raise AssertionError(name)


CASES = [*((c, "float64") for c in ("kinks", "window", "gather", "reductions", "transposed",
                                     "tensor", "scalars")),
         ("kinks", "float32"), ("gather", "float32")]  # a unit-direction product; a gather


def _loss(out):
    return sg.mean(sg.sum(out**2, axis=0)) if out.ndim > 1 else sg.mean(out**2)


@pytest.mark.slow  # nine losses and models (3-6 s of compile each, cold); one dense loss and one
# dense model stay quick (test_arrays::test_hessian_sweeps_once..., test_models::test_jacobian_...)
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_hessian_and_jacobian_equal_stacked_hvps_and_jvps(name, dtype):
    out, params, data, extra, more = _case(name)
    f = sg.compile(_loss(out) + extra, params + more, dtype=dtype)
    model = sg.compile(out, params, dtype=dtype)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(f.n_params) * 0.7
    eye = np.eye(f.n_params)
    tol = 1e-12 if dtype == "float64" else 2e-5
    H = f.hessian(x, **data)
    stacked = np.column_stack([f.hvp(x, e, **data) for e in eye])
    scale = np.abs(stacked).max()
    np.testing.assert_allclose(H, 0.5 * (stacked + stacked.T), rtol=0, atol=tol * scale)
    assert np.array_equal(H, H.T)
    x = x[:model.n_params]
    J = model.jacobian(x, **data)
    cols = np.stack([model.jvp(x, e, **data) for e in eye[:model.n_params, :model.n_params]],
                    axis=-1)
    np.testing.assert_allclose(J, cols, rtol=0, atol=tol * np.abs(cols).max())
    assert np.abs(J).max() > 0 and np.abs(H).max() > 0


def test_deep_models_take_one_loop_over_x():
    """Per-parameter loops repeat a seed's tangent through every later layer: for 8 tanh
    layers that code was 5.9x the one loop's, and its compile took 34 s against 8 s before the
    columns. Past :data:`PER_PARAM_MAX` the Jacobian (and a loss's Hessian) is one loop over
    x; a one-layer model keeps a loop per parameter array. (Source only: nothing compiles.)"""
    X = sg.data("Xd", shape=(4,))
    h, params = X, []
    for k in range(4):
        W, b = sg.params(f"Wd{k}", shape=(4, 4)), sg.params(f"bd{k}", shape=(4,))
        h, params = sg.tanh(W @ h + b), [*params, W, b]
    deep = sg.compile(h, params)
    assert "for jq in range(x.shape[0]):" in deep.source.split("def jacobian(")[1]
    shallow = sg.compile(sg.tanh(params[0] @ X + params[1]), params[:2])
    body = shallow.source.split("def jacobian(")[1].split("\n@")[0]
    assert "for jq in range(x.shape[0]):" not in body and body.count("for jq in range(") == 2
