"""minimize by the kernel protocol (issue 22 item 4, issue 21): a float32 array kernel trains in
the compiled loop with the Python loop's numbers; the optimizer state stays float64 while the
kernel is called in float32 only; objects are told apart by ``kind`` and ``value_and_grad``,
never by class (a residual kernel's ½‖r‖² runs through its ``value_and_grad``)."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad import optim


@pytest.fixture(scope="module")
def net32():
    """A 3-4-1 tanh network, mean squared error, float32 array code (fuse=False: x and g float32;
    the fused float32 kernel is tests/test_float32_fused.py's); 90 samples (a partial last batch
    of 6 at size 12)."""
    W1, b1 = sg.params("W1", shape=(4, 3)), sg.params("b1", shape=(4,))
    w2, b2 = sg.params("w2", shape=(4,)), sg.params("b2")
    X, y = sg.data("X", shape=(3,)), sg.data("y")
    f = sg.compile(sg.mean((w2 @ sg.tanh(W1 @ X + b1) + b2 - y) ** 2), dtype="float32",
                   fuse=False)
    rng = np.random.default_rng(4)
    Xd = rng.normal(size=(90, 3)).astype(np.float32)
    yd = (np.sin(Xd[:, 0]) - 0.5 * Xd[:, 1] * Xd[:, 2]).astype(np.float32)
    return f, {"X": Xd, "y": yd}, f.init(1, scale=0.5).astype(np.float64)


def _close32(c, p):
    """The compiled and Python loops on one float32 kernel. Both hand the kernel the same
    float32 x and run the rule in float64 on the widened gradient, so they agree to float64
    rounding (in practice bit for bit), far inside float32's: a loop doing any of its
    arithmetic in float32 (Numba's float() of a float32 is a float32) fails this."""
    assert c.compiled and not p.compiled
    assert (c.status, c.nit, c.nfev) == (p.status, p.nit, p.nfev)
    tol = dict(rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(c.x, p.x, **tol)
    np.testing.assert_allclose(c.jac, p.jac, **tol)
    assert c.fun == pytest.approx(p.fun, rel=1e-12)
    for name in ("step", "loss", "lr", "grad_norm", "epoch_loss"):
        np.testing.assert_allclose(getattr(c.history, name), getattr(p.history, name), **tol,
                                   err_msg=name)


# Each (optimizer, batching) compiles its own float32 loop (about 1.5-4 s cold): sgd on the full
# batch stays quick, the other seven run in the slow set (the quick set checks sgd, momentum and
# a mini-batch adam loop in float64 in test_train_loop).
@pytest.mark.parametrize("name, batch_size", [
    (n, b) if (n, b) == ("sgd", None)
    else pytest.param(n, b, marks=pytest.mark.slow)
    for n in ("sgd", "momentum", "adam", "rmsprop") for b in (None, 12)])
def test_float32_array_kernel_runs_in_the_compiled_loop(net32, name, batch_size):
    f, data, x0 = net32
    opt = getattr(optim, name)(lr=0.02)
    kw = dict(optimizer=opt, data=data, record_every=4, seed=3)
    kw.update(steps=150) if batch_size is None else kw.update(batch_size=batch_size, epochs=6)
    c = sg.minimize(f, x0, compiled=True, **kw)
    p = sg.minimize(f, x0, compiled=False, **kw)
    _close32(c, p)
    assert c.x.dtype == np.float64 and c.jac.dtype == np.float64
    assert c.history.loss[-1] < 0.8 * c.history.loss[0]  # it trains
    # the default picks the compiled loop, as for float64 kernels (this loop is compiled now)
    assert sg.minimize(f, x0, **kw).compiled


def test_float32_kernel_is_called_in_float32_only(net32):
    """Both loops (and L-BFGS / Newton) hand the kernel float32 x, v and buffers: the kernel
    never gets a float64 specialization (which cost a second compile, with mixed arithmetic)."""
    f, data, x0 = net32
    for kw in (dict(compiled=False, steps=5), dict(compiled=False, steps=5, batch_size=30),
               dict(compiled=True, steps=5), dict(optimizer=optim.lbfgs(), steps=5),
               dict(optimizer=optim.newton(), steps=3)):
        kw.setdefault("optimizer", optim.adam(0.01))
        res = sg.minimize(f, x0, data=data, seed=0, **kw)
        assert np.isfinite(res.fun)
    for fn in (f.jit.value_and_grad, f.jit.hvp):
        assert fn.signatures, fn
        for sig in fn.signatures:
            assert str(sig[0].dtype) == "float32", sig


def test_float32_kernel_keeps_updates_below_its_rounding(net32):
    """The optimizer state is float64: 2,000 steps that each move x by ~1e-9 (below float32's
    resolution at |x| >= 0.5, 3e-8) still add up, in both loops; a float32 state would not move."""
    f, data, x0 = net32
    x0 = x0 + np.where(x0 >= 0, 0.5, -0.5)  # every |x| >= 0.5
    kw = dict(optimizer=optim.sgd(lr=1e-9), data=data, steps=2000, record_every=0)
    for compiled in (True, False):
        res = sg.minimize(f, x0, compiled=compiled, **kw)
        g0 = f.grad(x0.astype(np.float32), **data).astype(np.float64)
        moved = res.x - x0
        big = np.abs(g0) > 1e-2
        # 2000 steps of -lr * g (g changes by ~1e-6 relatively over the run)
        np.testing.assert_allclose(moved[big], -2000 * 1e-9 * g0[big], rtol=1e-3)
        x32, g32 = x0[big].astype(np.float32), g0[big].astype(np.float32)
        assert big.sum() >= 10 and np.all(x32 - np.float32(1e-9) * g32 == x32)  # lost in f32


def test_float32_range_of_x_is_checked(net32):
    """x finite in float64 but beyond float32 would reach the kernel as inf (and tanh(inf) = 1
    keeps the loss finite: a silently wrong run). x0 there is refused; an update that leaves
    the range stops the run as diverged, both loops, with x the last iterate in range."""
    f, data, x0 = net32
    x = x0.copy()
    x[0] = 1e39
    with pytest.raises(ValueError, match=r"x0\[0\] = 1e\+39 is beyond the range of this "
                                         r"float32 kernel"):
        sg.minimize(f, x, data=data, steps=3)
    for compiled in (True, False):  # lr * g ~ 1e39: finite in float64, beyond float32
        res = sg.minimize(f, x0, optimizer=optim.sgd(1e40), data=data, steps=3,
                          compiled=compiled)
        assert res.status == "diverged" and res.nit == 0, res.message
        assert "non-finite parameters" in res.message
        np.testing.assert_array_equal(res.x, x0)


# --------------------------------------------------------------------------- the protocol


class HalfSquares:
    """A stand-in residual kernel: ``r = A x - b`` per sample (columns ``a0, a1, b``), with
    ``kind = "residual"`` and the loss methods of ½‖r‖² (no ``jit``)."""

    kind = "residual"
    params = ("x0", "x1")
    n_params = 2
    data_names = ("a0", "a1", "b")

    def __init__(self):
        self.calls = 0

    @staticmethod
    def _A(a0, a1):
        return np.stack([a0, a1], axis=1)

    def value_and_grad(self, x, *, a0, a1, b):
        self.calls += 1
        r = self._A(a0, a1) @ x - b
        return 0.5 * float(r @ r), self._A(a0, a1).T @ r

    def hvp(self, x, v, *, a0, a1, b):
        A = self._A(a0, a1)
        return A.T @ (A @ v)


@pytest.fixture(scope="module")
def lines():
    rng = np.random.default_rng(8)
    a0, a1 = rng.normal(size=40), rng.normal(size=40)
    b = 1.5 * a0 - 0.5 * a1 + 0.01 * rng.normal(size=40)
    return {"a0": a0, "a1": a1, "b": b}, np.linalg.lstsq(np.stack([a0, a1], 1), b, rcond=None)[0]


def test_residual_kind_goes_through_its_value_and_grad(lines):
    data, want = lines
    k = HalfSquares()
    res = sg.minimize(k, [0.0, 0.0], optimizer=optim.adam(0.05), data=data, steps=800)
    assert not res.compiled and k.calls == 801  # 800 steps and the final evaluation
    np.testing.assert_allclose(res.x, want, atol=1e-4)
    with pytest.raises(ValueError, match=r"compiled=True is not possible.*value_and_grad"):
        sg.minimize(k, [0.0, 0.0], optimizer=optim.sgd(0.02), data=data, steps=5,
                    compiled=True)
    mb = sg.minimize(k, [0.0, 0.0], optimizer=optim.sgd(0.02), data=data, batch_size=8,
                     epochs=60, seed=0)
    np.testing.assert_allclose(mb.x, want, atol=0.05)
    nt = sg.minimize(k, [0.0, 0.0], optimizer=optim.newton(), data=data, steps=10)  # its hvp
    np.testing.assert_allclose(nt.x, want, rtol=1e-9)
    with pytest.raises(ValueError, match="do not pass hvp="):
        sg.minimize(k, [0.0, 0.0], optimizer=optim.newton(), data=data, hvp=k.hvp)


def test_objects_without_a_loss_are_refused_in_their_terms():
    class Model:
        kind = "model"

    class Residuals:
        kind = "residual"

        def residuals(self, x):
            return x

    with pytest.raises(TypeError, match=r"compiled model.*compile a loss"):
        sg.minimize(Model(), [0.0])
    with pytest.raises(TypeError, match="'residual' kernel without value_and_grad"):
        sg.minimize(Residuals(), [0.0])
    with pytest.raises(TypeError, match="an object with value_and_grad"):
        sg.minimize(object(), [0.0])


def test_a_kind_without_jit_runs_its_method_not_the_compiled_loop(lines):
    """``kind = "scalar"`` without ``jit`` (e.g. a Dask-bound kernel): its value_and_grad."""
    data, want = lines

    class Scalarish(HalfSquares):
        kind = "scalar"

    res = sg.minimize(Scalarish(), [0.0, 0.0], optimizer=optim.lbfgs(), data=data, steps=50)
    np.testing.assert_allclose(res.x, want, rtol=1e-6)
