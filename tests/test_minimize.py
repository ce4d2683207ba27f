"""minimize: the seed experiments, compiled loop == Python loop, mini-batches, divergence, SciPy.

Until the core's ``sg.compile`` is used here, kernels are hand-written stand-ins with the exact
Kernel shape of the contract (``value_and_grad``, ``jit.value_and_grad``, ``data_args``...).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types

import numba
import numpy as np
import pytest

from symgrad import optim, schedules
from symgrad.scipy_interop import scipy_objective
from symgrad.train import OptimizeResult, minimize

# --------------------------------------------------------------------------- stand-in kernels


@numba.njit(cache=False)
def _rosen_vg(x, g):
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    g[0] = -400.0 * x[0] * a - 2.0 * b
    g[1] = 200.0 * a
    return 100.0 * a * a + b * b


@numba.njit(cache=False)
def _line_vg(x, g, t, y, batch):
    # mean((x0*t + x1 - y)**2) over the samples ``batch`` (None: all), as a scalar kernel's jit
    n = t.size if batch is None else batch.size
    s = 0.0
    g[0] = 0.0
    g[1] = 0.0
    for j in range(n):
        i = j
        if batch is not None:
            i = batch[j]
        r = x[0] * t[i] + x[1] - y[i]
        s += r * r
        g[0] += 2.0 * r * t[i]
        g[1] += 2.0 * r
    g[0] /= n
    g[1] /= n
    return s / n


class RosenbrockKernel:
    """100 (x2 - x1^2)^2 + (1 - x1)^2 with the Kernel interface (parameter-only)."""

    kind = "scalar"  # the protocol: minimize calls jit.value_and_grad of these kinds
    params = ("x1", "x2")
    n_params = 2
    data_names = ()
    jit = types.SimpleNamespace(value_and_grad=_rosen_vg)

    def data_args(self, data=None, batch=None):
        if data:
            raise ValueError("no data expected")
        return ()

    def value_and_grad(self, x, out=None, *, batch=None):
        g = np.empty(2) if out is None else out
        return _rosen_vg(np.asarray(x, dtype=float), g), g

    def value(self, x):
        return self.value_and_grad(x)[0]

    def hessian(self, x, out=None):
        x1, x2 = x
        return np.array([[1200 * x1**2 - 400 * x2 + 2, -400 * x1], [-400 * x1, 200.0]])

    def hvp(self, x, v, out=None):
        return self.hessian(x) @ v


class LineKernel:
    """mean((a*t + b - y)**2) with the Kernel interface: a scalar kernel's jit takes the
    columns, then the sample indices (None: all)."""

    kind = "scalar"  # the protocol: minimize calls jit.value_and_grad of these kinds
    params = ("a", "b")
    n_params = 2
    data_names = ("t", "y")
    jit = types.SimpleNamespace(value_and_grad=_line_vg)

    def data_args(self, data=None, batch=None):
        return (np.asarray(data["t"], float), np.asarray(data["y"], float), batch)


class LineObject:
    """mean((a*t + b - y)**2) as an object with ``value_and_grad`` and no compiled kind (as a
    residual kernel's ½‖r‖²); records the data it is given."""

    params = ("a", "b")
    n_params = 2
    data_names = ("t", "y")

    def __init__(self):
        self.calls = []

    def value_and_grad(self, x, *, t, y):
        self.calls.append((t, y))
        r = x[0] * t + x[1] - y
        return float(np.mean(r * r)), np.array([np.mean(2 * r * t), np.mean(2 * r)])


def rosen_np(x):
    a, b = x[1] - x[0] ** 2, 1.0 - x[0]
    return 100 * a * a + b * b, np.array([-400 * x[0] * a - 2 * b, 200 * a])


def seed_rosen(x):
    """The seed's variant WITHOUT the factor 100: (x2 - x1^2)^2 + (1 - x1)^2."""
    a, b = x[1] - x[0] ** 2, 1.0 - x[0]
    return a * a + b * b, np.array([-4 * x[0] * a - 2 * b, 2 * a])


@pytest.fixture(scope="module")
def rosen():
    return RosenbrockKernel()


@pytest.fixture(scope="module")
def line_data():
    rng = np.random.default_rng(7)
    t = np.linspace(-1.0, 1.0, 50)
    return {"t": t, "y": 3.0 * t - 0.5 + 0.1 * rng.normal(size=t.size)}


# --------------------------------------------------------------------------- the seed experiment


def test_seed_lr_0_1_ends_near_the_minimum():
    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(lr=0.1), steps=100)
    assert res.status == "completed" and res.success and res.nit == 100
    np.testing.assert_allclose(res.x, [1.0088382, 1.0213919], atol=1e-7)
    assert res.fun == pytest.approx(9.1345e-5, rel=1e-4)


def test_seed_lr_0_2_does_not_converge():
    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(lr=0.2), steps=100)
    assert res.status == "completed"  # it does not blow up: it cycles between two points
    assert res.fun > 0.1
    assert res.fun == pytest.approx(0.18524, rel=1e-4)
    assert res.history.loss[-30:].min() > 0.1


def test_seed_lr_0_2_with_time_decay_converges():
    lr = schedules.time_decay(0.2, decay=0.01)
    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(lr=lr), steps=100)
    assert res.fun < 1e-5
    assert res.fun == pytest.approx(6.606e-6, rel=1e-3)
    np.testing.assert_allclose(res.history.lr[:100], [0.2 / (1 + 0.01 * k) for k in range(100)])


def test_seed_quadratic_fit_decreases_mse_monotonically():
    rng = np.random.default_rng(42)
    time = np.arange(20.0)
    speed = rng.normal(size=20) + 0.5 * (time - 9.5) ** 2 + 1
    params = rng.normal(size=3)

    def mse(x, t, y):
        a, b, c = x
        r = a * t**2 + b * t + c - y
        return np.mean(r * r), np.array([np.mean(2 * r * t**2), np.mean(2 * r * t), np.mean(2 * r)])

    res = minimize(
        mse, params, optimizer=optim.sgd(lr=1e-5), steps=10, data={"t": time, "y": speed}
    )
    loss = res.history.loss
    assert len(loss) == 11
    assert np.all(np.diff(loss) < 0)
    assert loss[-1] < 0.5 * loss[0]


# --------------------------------------------------------------------------- compiled == Python

OPTIMIZERS = {
    "sgd": optim.sgd(lr=1e-3),
    "momentum": optim.momentum(lr=1e-3, beta=0.9),
    "nesterov": optim.nesterov(lr=schedules.warmup(1e-3, steps=50), beta=0.9),
    "adam": optim.adam(lr=schedules.cosine(0.05, decay_steps=2000)),
    "rmsprop": optim.rmsprop(lr=schedules.exponential(1e-2, 0.1, 1000)),
    "adagrad": optim.adagrad(lr=schedules.time_decay(0.5, 1e-3)),
}


def _assert_same(a: OptimizeResult, b: OptimizeResult) -> None:
    assert (a.status, a.nit, a.nfev, a.message) == (b.status, b.nit, b.nfev, b.message)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.jac, b.jac, rtol=1e-12, atol=1e-300)
    assert a.fun == pytest.approx(b.fun, rel=1e-12, abs=1e-300)
    for name in ("step", "x", "loss", "lr", "grad_norm"):
        np.testing.assert_allclose(
            getattr(a.history, name), getattr(b.history, name), rtol=1e-12, atol=0, err_msg=name
        )


# Two rules quick on this parameter-only kernel (a loop of its own text); every rule's compiled
# loop is checked quick in test_train_loop (with data), the other four here in the slow set.
@pytest.mark.parametrize("name", [n if n in ("sgd", "adam") else
                                  pytest.param(n, marks=pytest.mark.slow) for n in OPTIMIZERS])
def test_compiled_loop_equals_python_loop(rosen, name):
    kw = dict(optimizer=OPTIMIZERS[name], steps=2500, record_every=7)
    c = minimize(rosen, [-1.2, 1.0], compiled=True, **kw)
    p = minimize(rosen, [-1.2, 1.0], compiled=False, **kw)
    assert c.compiled and not p.compiled
    _assert_same(c, p)
    np.testing.assert_array_equal(c.x, p.x)  # in fact bit for bit
    assert c.history.step[-1] == 2500 and list(c.history.step[:3]) == [0, 7, 14]


def test_compiled_loop_with_data_equals_python_loop(line_data):
    k = LineKernel()
    kw = dict(optimizer=optim.adam(lr=0.05), steps=300, data=line_data)
    c = minimize(k, [0.0, 0.0], compiled=True, **kw)
    p = minimize(k, [0.0, 0.0], compiled=False, **kw)
    _assert_same(c, p)
    np.testing.assert_allclose(c.x, np.polyfit(line_data["t"], line_data["y"], 1), atol=1e-3)


@pytest.mark.parametrize("compiled", [True, False])
def test_stopping_rules_agree_between_loops(rosen, compiled):
    opt = optim.momentum(lr=1e-3, beta=0.9)
    g = minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=20_000, gtol=1e-6, compiled=compiled)
    assert g.status == "converged" and "gtol" in g.message
    assert np.linalg.norm(g.jac) <= 1e-6
    assert g.nfev == g.nit + 1  # the stopping evaluation is reused for fun and jac
    t = minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=20_000, tol=1e-12, compiled=compiled)
    assert t.status == "converged" and "tol" in t.message
    m = minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=10, gtol=1e-9, compiled=compiled)
    assert m.status == "maxiter" and not m.success and m.nit == 10


def test_stopping_rules_identical_in_both_loops(rosen):
    opt = optim.nesterov(lr=1e-3, beta=0.9)
    for kw in ({"gtol": 1e-5}, {"tol": 1e-10}, {"diverge_factor": 1.5}):
        c = minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=5000, compiled=True, **kw)
        p = minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=5000, compiled=False, **kw)
        _assert_same(c, p)


def test_progress_chunks_do_not_change_the_compiled_result(rosen, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # force the stderr fallback
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    kw = dict(optimizer=optim.adam(lr=0.01), steps=3000, record_every=10, compiled=True)
    a = minimize(rosen, [-1.2, 1.0], **kw)
    b = minimize(rosen, [-1.2, 1.0], progress=True, **kw)
    _assert_same(a, b)
    err = capsys.readouterr().err
    assert "minimize:" in err and "3000/3000" in err
    minimize(rosen, [-1.2, 1.0], progress=True, **{**kw, "compiled": False})
    assert "3000/3000" in capsys.readouterr().err


def test_default_runs_the_compiled_loop_whenever_it_can(rosen):
    """Issue 25: compiled=None compiles (or loads) the loop for any run that can compile, even a
    short one; plain callables, callbacks and hand-written pairs run in Python."""
    opt = optim.sgd(lr=1e-3)
    assert minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=10).compiled
    assert minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=0).compiled
    assert not minimize(rosen_np, [-1.2, 1.0], optimizer=opt, steps=10).compiled
    assert not minimize(rosen, [-1.2, 1.0], optimizer=opt, steps=10,
                        callback=lambda *a: False).compiled
    pair = optim.Optimizer("pair", lambda x: (), lambda g, s, x, k: (x - 1e-3 * g, s),
                           schedules.constant(1e-3))
    assert not minimize(rosen, [-1.2, 1.0], optimizer=pair, steps=10).compiled
    # a rule Numba cannot cache on disk (a lambda) would compile in every process: a short run
    # stays in Python until the loop is compiled in this process
    own = optim.from_rule("own", lambda x, g, lr, k: (x - lr * g,), lr=1e-3)
    assert not minimize(rosen, [-1.2, 1.0], optimizer=own, steps=10).compiled
    assert minimize(rosen, [-1.2, 1.0], optimizer=own, steps=10, compiled=True).compiled
    assert minimize(rosen, [-1.2, 1.0], optimizer=own, steps=10).compiled


@pytest.mark.parametrize(
    ("f", "kw", "match"),
    [
        (rosen_np, {"optimizer": optim.sgd()}, "not a symgrad Kernel"),
        (RosenbrockKernel(), {"optimizer": optim.sgd(), "callback": lambda *a: None}, "callback"),
        (
            RosenbrockKernel(),
            {"optimizer": optim.Optimizer("mine", lambda x: (), lambda g, s, x, k: (x, s), 0.1)},
            "no compiled update",
        ),
    ],
)
def test_compiled_true_says_why_it_cannot(f, kw, match):
    with pytest.raises(ValueError, match=match):
        minimize(f, [0.0, 0.0], steps=5, compiled=True, **kw)


def test_compiled_true_refuses_an_object_that_is_not_a_compiled_loss(line_data):
    with pytest.raises(ValueError, match="value_and_grad method runs in the Python loop"):
        minimize(LineObject(), [0.0, 0.0], data=line_data, batch_size=5, compiled=True)


# --------------------------------------------------------------------------- history, result


def test_history_layout_and_final_record():
    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(0.1), steps=10, record_every=3,
                   record_x=True)
    h = res.history
    assert list(h.step) == [0, 3, 6, 9, 10]
    assert h.x.shape == (5, 2) and len(h) == 5
    np.testing.assert_array_equal(h.x[0], [2.0, 2.0])
    np.testing.assert_array_equal(h.x[-1], res.x)
    assert h.loss[-1] == res.fun
    assert h.grad_norm[-1] == pytest.approx(np.linalg.norm(res.jac))
    assert h.loss[0] == seed_rosen(np.array([2.0, 2.0]))[0]
    assert h.epoch_loss.shape == (0,)
    assert res.nfev == 11


@pytest.mark.parametrize("compiled", [True, False])
def test_history_keeps_x_only_when_asked(rosen, compiled):
    """Issue 24 #16: loss and gradient norm every step, x only with record_x=True; both loops
    record the same numbers."""
    kw = dict(optimizer=optim.momentum(1e-3), steps=20, record_every=3)
    plain = minimize(rosen, [-1.2, 1.0], compiled=compiled, **kw)
    with_x = minimize(rosen, [-1.2, 1.0], compiled=compiled, record_x=True, **kw)
    other = minimize(rosen, [-1.2, 1.0], compiled=not compiled, record_x=True, **kw)
    assert plain.compiled == compiled
    assert plain.history.x.shape == (0, 2) and len(plain.history) == 8
    assert with_x.history.x.shape == (8, 2)
    for h in (with_x.history, other.history):
        np.testing.assert_array_equal(h.loss, plain.history.loss)
        np.testing.assert_array_equal(h.grad_norm, plain.history.grad_norm)
        np.testing.assert_array_equal(h.step, plain.history.step)
    np.testing.assert_array_equal(with_x.history.x, other.history.x)
    np.testing.assert_array_equal(with_x.history.x[-1], plain.x)


def test_history_memory_is_bounded_without_record_x():
    """Issue 24 #16: 50,000 parameters x 100 steps kept every iterate (40 MB); now the history
    holds 32 bytes a step."""
    import tracemalloc

    def f(x):
        return 0.5 * float(np.einsum("i,i->", x, x)), x

    x0 = np.ones(50_000)
    tracemalloc.start()
    try:
        res = minimize(f, x0, optimizer=optim.sgd(1e-3), steps=100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.history.x.shape == (0, 50_000) and len(res.history) == 101
    assert peak < 10 * x0.nbytes, peak  # a few iterates alive at once, not 100


def test_a_loop_numba_cannot_compile_falls_back_to_python_by_default(rosen, monkeypatch):
    from numba.core.errors import TypingError

    from symgrad.train import run

    def fails(p):
        raise TypingError("Cannot determine Numba type of <class 'object'>")

    monkeypatch.setattr(run, "run_compiled", fails)
    kw = dict(optimizer=optim.sgd(1e-3), steps=5)
    with pytest.warns(RuntimeWarning, match="did not compile for this loss.*Cannot determine"):
        res = minimize(rosen, [-1.2, 1.0], **kw)
    assert not res.compiled and res.status == "completed"
    with pytest.raises(TypingError):
        minimize(rosen, [-1.2, 1.0], compiled=True, **kw)


def test_record_every_zero_records_nothing(rosen):
    for compiled in (True, False):
        res = minimize(rosen, [-1.2, 1], optimizer=optim.sgd(), steps=50, record_every=0,
                       compiled=compiled)
        assert len(res.history) == 0 and res.history.x.shape == (0, 2)


def test_result_is_frozen_and_x0_untouched():
    x0 = np.array([2.0, 2.0])
    res = minimize(seed_rosen, x0, optimizer=optim.sgd(0.1), steps=5)
    np.testing.assert_array_equal(x0, [2.0, 2.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.x = None  # type: ignore[misc]


def test_default_optimizer_converges_on_full_data_and_takes_sgd_steps_on_batches(line_data):
    """Regression: the default was optim.sgd(lr=1e-3) for 1000 steps everywhere, which left a
    full-batch fit far from its minimum with status "completed" (success=True)."""
    res = minimize(seed_rosen, [-1.2, 1.0])  # the MATLAB seed's start; sgd(1e-3) ends far off
    assert res.status == "converged" and res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    assert res.nit < 100 and np.linalg.norm(res.jac) < 1e-5
    mb = minimize(LineObject(), [0.0, 0.0], data=line_data, batch_size=5, epochs=2, seed=0)
    assert mb.history.lr[0] == 1e-3 and mb.nit == 2 * -(-len(line_data["t"]) // 5)


def test_default_optimizer_is_newton_with_an_hvp_and_refuses_compiled_true():
    def hvp(x, v):  # rosen_np's exact Hessian times v
        h = np.array([[1200 * x[0] ** 2 - 400 * x[1] + 2, -400 * x[0]], [-400 * x[0], 200.0]])
        return h @ v

    res = minimize(rosen_np, [-1.2, 1.0], hvp=hvp)
    assert res.status == "converged" and res.nhev > 0
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"compiled=True runs first-order.*optim.lbfgs\(\)"):
        minimize(RosenbrockKernel(), [0.0, 0.0], compiled=True)


def test_data_as_keywords_is_refused_naming_data_mapping(line_data):
    with pytest.raises(TypeError, match=r"data=\{'t': \.\.\., 'y': \.\.\.\}"):
        minimize(LineObject(), [0.0, 0.0], t=line_data["t"], y=line_data["y"])


def test_callback_sees_each_step_and_can_stop():
    seen = []

    def cb(k, x, loss, grad):
        seen.append((k, x.copy(), loss))
        return k == 5

    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(0.1), steps=100, callback=cb)
    assert res.status == "stopped" and res.success and res.nit == 5
    assert [s[0] for s in seen] == list(range(6))
    np.testing.assert_array_equal(seen[-1][1], res.x)
    assert list(res.history.step) == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("compiled", [True, False])
def test_divergence_stops_with_the_step_and_a_finite_x(rosen, compiled):
    res = minimize(rosen, [-1.2, 1.0], optimizer=optim.sgd(lr=0.01), steps=1000,
                   diverge_factor=None, compiled=compiled)  # fmt: skip
    assert res.status == "diverged" and not res.success
    assert f"diverged at step {res.nit}" in res.message
    assert np.all(np.isfinite(res.x))
    assert np.all(np.isfinite(res.history.x))
    assert res.nit < 1000


@pytest.mark.parametrize("compiled", [True, False])
def test_loss_bound_stops_early(rosen, compiled):
    res = minimize(rosen, [-1.2, 1.0], optimizer=optim.sgd(lr=0.01), steps=1000, compiled=compiled)
    assert res.status == "diverged"
    assert "exceeds diverge_factor" in res.message
    f0 = rosen_np(np.array([-1.2, 1.0]))[0]
    assert res.fun > 1e6 * f0 and math.isfinite(res.fun)
    assert np.all(res.history.loss[:-1] <= 1e6 * f0)


def test_non_finite_loss_at_x0_is_reported_at_step_0():
    res = minimize(lambda x: (math.nan, x), [1.0, 2.0], steps=10)
    assert res.status == "diverged" and res.nit == 0
    assert res.message.startswith("non-finite at the starting point (step 0): the loss is nan")
    assert "learning rate" not in res.message
    np.testing.assert_array_equal(res.x, [1.0, 2.0])


def test_non_finite_gradient_is_divergence():
    res = minimize(lambda x: (1.0, np.array([math.inf])), [1.0], steps=10)
    assert res.status == "diverged" and "gradient is not finite" in res.message


def test_update_overflow_keeps_the_last_finite_iterate():
    res = minimize(lambda x: (float(x @ x), 2 * x), [1e10], optimizer=optim.sgd(1e300), steps=5)
    assert res.status == "diverged" and res.nit == 0
    assert "non-finite parameters" in res.message
    np.testing.assert_array_equal(res.x, [1e10])


# --------------------------------------------------------------------------- mini-batches


def _recording_line(calls):
    def f(x, t, y):
        calls.append(t.copy())
        r = x[0] * t + x[1] - y
        return float(np.mean(r * r)), np.array([np.mean(2 * r * t), np.mean(2 * r)])

    return f


def test_minibatch_epochs_cover_every_sample_once_with_a_partial_last_batch():
    calls = []
    t = np.arange(10.0)
    data = {"t": t, "y": 2 * t}
    res = minimize(_recording_line(calls), [0.0, 0.0], optimizer=optim.sgd(1e-3), data=data,
                   batch_size=4, epochs=3, seed=0)  # fmt: skip
    assert res.nit == 9
    batches = calls[:9]
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    rng = np.random.default_rng(0)
    for e in range(3):
        perm = rng.permutation(10)
        got = np.concatenate(batches[3 * e : 3 * e + 3])
        np.testing.assert_array_equal(got, t[perm])
    assert res.history.epoch_loss.shape == (3,)
    w = np.array([4, 4, 2])
    np.testing.assert_allclose(res.history.epoch_loss[0], w @ res.history.loss[:3] / 10)
    assert len(calls) == 10  # + the final full-data evaluation
    assert len(calls[-1]) == 10


def test_minibatch_is_reproducible_with_a_seed_and_differs_across_seeds(line_data):
    f = _recording_line([])
    kw = dict(optimizer=optim.momentum(0.05), data=line_data, batch_size=8, epochs=4)
    a = minimize(f, [0.0, 0.0], seed=1, **kw)
    b = minimize(f, [0.0, 0.0], seed=1, **kw)
    c = minimize(f, [0.0, 0.0], seed=2, **kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_minibatch_object_gets_the_batch_rows_then_the_full_data(line_data):
    """An object with value_and_grad (no compiled kind) is called with each batch's rows of
    the per-sample columns (the permutations of default_rng(seed)), then on the full data."""
    k = LineObject()
    res = minimize(k, [0.0, 0.0], optimizer=optim.sgd(0.1), data=line_data, batch_size=16,
                   steps=7, seed=3)  # fmt: skip
    rng = np.random.default_rng(3)
    p0, p1 = rng.permutation(50), rng.permutation(50)
    want = [p0[i:i + 16] for i in range(0, 50, 16)] + [p1[i:i + 16] for i in range(0, 48, 16)]
    assert len(k.calls) == 8 and not res.compiled
    for (t, y), idx in zip(k.calls[:7], want, strict=True):
        np.testing.assert_array_equal(t, line_data["t"][idx])
        np.testing.assert_array_equal(y, line_data["y"][idx])
    assert k.calls[7][0] is line_data["t"] and k.calls[7][1] is line_data["y"]
    assert res.history.epoch_loss.shape == (2,)  # one full epoch and a partial one
    r = res.x[0] * line_data["t"] + res.x[1] - line_data["y"]
    assert res.fun == pytest.approx(np.mean(r * r), rel=1e-15)


def test_minibatch_scalar_kernel_equals_the_object_on_its_rows(line_data):
    """The same loss as a scalar kernel (sample indices into its jit, compiled and Python
    loops) and as an object given the rows: the same iterates."""
    kw = dict(optimizer=optim.adam(0.05), data=line_data, batch_size=16, steps=40, seed=5)
    obj = minimize(LineObject(), [0.0, 0.0], **kw)
    for compiled in (True, False):
        ker = minimize(LineKernel(), [0.0, 0.0], compiled=compiled, **kw)
        assert ker.compiled == compiled
        np.testing.assert_allclose(ker.x, obj.x, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ker.history.loss, obj.history.loss, rtol=1e-12)


def test_minibatch_sgd_fits_the_line(line_data):
    res = minimize(_recording_line([]), [0.0, 0.0], optimizer=optim.sgd(0.1), data=line_data,
                   batch_size=10, epochs=60, seed=0, tol=1e-9)  # fmt: skip
    np.testing.assert_allclose(res.x, np.polyfit(line_data["t"], line_data["y"], 1), atol=0.05)
    assert np.all(np.diff(res.history.epoch_loss[:5]) < 0)


def test_minibatch_tol_uses_epoch_losses(line_data):
    res = minimize(_recording_line([]), [0.0, 0.0], optimizer=optim.sgd(0.1), data=line_data,
                   batch_size=50, epochs=500, seed=0, tol=1e-6)  # fmt: skip
    assert res.status == "converged" and "epoch" in res.message
    assert res.nit < 500


# --------------------------------------------------------------------------- argument checking


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"steps": 5, "epochs": 2, "data": {"t": np.ones(3)}}, ValueError, "not both"),
        ({"batch_size": 2}, ValueError, "batch_size needs data"),
        ({"epochs": 2}, ValueError, "epochs needs data"),
        ({"steps": -1}, ValueError, "steps"),
        ({"steps": 2.5}, ValueError, "steps"),
        ({"record_every": -1}, ValueError, "record_every"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"diverge_factor": 1.0}, ValueError, "diverge_factor"),
        ({"optimizer": "adam"}, TypeError, "optimizer must be"),
        ({"callback": 3}, TypeError, "callback"),
        ({"data": [1, 2]}, TypeError, "data must be a mapping"),
        ({"data": {"t": np.ones(3), "y": np.ones(4)}}, ValueError, "same number of samples"),
        ({"data": {"t": np.ones(4)}, "batch_size": 2, "gtol": 1e-3}, ValueError, "gtol"),
        ({"data": {"t": np.ones(4)}, "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        minimize(lambda x, **d: (0.0, x), [1.0], **kw)


def test_bad_f_and_x0():
    with pytest.raises(TypeError, match="f must be"):
        minimize(3, [1.0])
    with pytest.raises(ValueError, match="1-D"):
        minimize(seed_rosen, np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        minimize(seed_rosen, [np.nan, 1.0])
    with pytest.raises(ValueError, match=r"2 parameters \(x1, x2\)"):
        minimize(RosenbrockKernel(), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="needs data"):
        minimize(LineKernel(), [1.0, 2.0])
    with pytest.raises(TypeError, match=r"\(value, grad\)"):
        minimize(lambda x: 1.0, [1.0], steps=1)
    with pytest.raises(ValueError, match="gradient of shape"):
        minimize(lambda x: (1.0, np.ones(3)), [1.0], steps=1)


# --------------------------------------------------------------------------- SciPy interop


def test_scipy_objective_with_a_plain_callable():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    obj = scipy_objective(rosen_np)
    assert obj.hess is None and obj.hessp is None
    res = scipy_optimize.minimize(obj.fun, [-1.2, 1.0], jac=obj.jac, method="BFGS", tol=1e-10)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    assert obj.nfev == res.nfev  # jac(x) after fun(x) reuses the evaluation
    res2 = scipy_optimize.minimize(x0=[-1.2, 1.0], method="L-BFGS-B", **obj.kwargs)
    np.testing.assert_allclose(res2.x, [1.0, 1.0], atol=1e-4)


def test_scipy_objective_with_a_kernel_uses_the_exact_hessian(rosen):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    obj = scipy_objective(rosen)
    for method, extra in (("Newton-CG", {"hessp": obj.hessp}), ("trust-exact", {"hess": obj.hess})):
        res = scipy_optimize.minimize(obj.fun, [-1.2, 1.0], jac=obj.jac, method=method, **extra)
        assert res.success, (method, res.message)
        np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    v, g = obj.value_and_grad(np.array([-1.0, 2.0]))
    assert v == 104.0  # the MATLAB doc's values at (-1, 2)
    np.testing.assert_array_equal(g, [396.0, 200.0])


def test_scipy_objective_passes_data(line_data):
    f = _recording_line([])
    obj = scipy_objective(f, data=line_data)
    x = np.array([1.0, 0.0])
    assert obj.fun(x) == f(x, **line_data)[0]
    np.testing.assert_array_equal(obj.jac(x), f(x, **line_data)[1])
    with pytest.raises(TypeError, match="f must be"):
        scipy_objective(42)


# --------------------------------------------------------------------------- real symgrad kernels


@pytest.fixture(scope="module")
def sg():
    import symgrad

    if not hasattr(symgrad, "compile"):
        pytest.skip("symgrad.compile is not available yet")
    return symgrad


@pytest.fixture(scope="module")
def seed_kernel(sg):
    x1, x2 = sg.params("x1 x2")
    return sg.compile((x2 - x1**2) ** 2 + (1 - x1) ** 2)


@pytest.fixture(scope="module")
def quadfit(sg):
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    rng = np.random.default_rng(42)
    time = np.arange(20.0)
    speed = rng.normal(size=20) + 0.5 * (time - 9.5) ** 2 + 1
    f = sg.compile(sg.mean((a * t**2 + b * t + c - y) ** 2))
    return f, {"t": time, "y": speed}, rng.normal(size=3)


@pytest.mark.parametrize(
    ("lr", "x_end", "f_end"),
    [
        (0.1, [1.0088382, 1.0213919], 9.1345e-5),
        (0.2, [0.7407781, 0.8923244], 0.185238),
        (schedules.time_decay(0.2, decay=0.01), [0.9976260, 0.9942727], 6.6060e-6),
    ],
    ids=["lr0.1", "lr0.2", "lr0.2-time-decay"],
)
@pytest.mark.parametrize("compiled", [False, True])
def test_seed_experiment_with_a_real_kernel(seed_kernel, lr, x_end, f_end, compiled):
    res = minimize(seed_kernel, [2.0, 2.0], optimizer=optim.sgd(lr=lr), steps=100,
                   compiled=compiled)  # fmt: skip
    assert res.compiled == compiled
    np.testing.assert_allclose(res.x, x_end, atol=1e-7)
    assert res.fun == pytest.approx(f_end, rel=1e-4)
    ref = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(lr=lr), steps=100)
    np.testing.assert_allclose(res.history.x, ref.history.x, rtol=1e-12, atol=1e-14)


def test_quadratic_fit_kernel_decreases_mse_monotonically(quadfit):
    f, data, p0 = quadfit
    res = minimize(f, p0, optimizer=optim.sgd(lr=1e-5), steps=10, data=data)
    assert np.all(np.diff(res.history.loss) < 0)
    c = minimize(f, p0, optimizer=optim.sgd(lr=1e-5), steps=10, data=data, compiled=True)
    _assert_same(c, res)


def test_real_kernel_compiled_equals_python_with_data(quadfit):
    f, data, p0 = quadfit
    kw = dict(optimizer=optim.adam(lr=0.05), steps=400, data=data, record_every=5)
    _assert_same(minimize(f, p0, compiled=True, **kw), minimize(f, p0, compiled=False, **kw))


def test_bound_kernel_runs_both_loops(quadfit):
    f, data, p0 = quadfit
    fb = f.bind(**data)
    kw = dict(optimizer=optim.momentum(lr=1e-5, beta=0.9), steps=50)
    a = minimize(fb, p0, compiled=True, **kw)
    _assert_same(a, minimize(fb, p0, compiled=False, **kw))
    _assert_same(a, minimize(f, p0, data=data, compiled=False, **kw))
    with pytest.raises(ValueError, match="bound kernel"):
        minimize(fb, p0, data=data)


def test_real_kernel_minibatches(quadfit):
    f, data, p0 = quadfit
    kw = dict(optimizer=optim.adam(lr=0.05), data=data, batch_size=6, epochs=5, seed=0)
    res = minimize(f, p0, **kw)
    assert res.nit == 20 and res.history.epoch_loss.shape == (5,)
    rng = np.random.default_rng(0)
    perm = rng.permutation(20)
    assert res.history.loss[0] == pytest.approx(f.value(p0, batch=perm[:6], **data), rel=1e-14)
    assert res.fun == pytest.approx(f.value(res.x, **data), rel=1e-14)
    np.testing.assert_array_equal(res.x, minimize(f, p0, **kw).x)


def test_scipy_objective_with_a_real_kernel(quadfit):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    f, data, p0 = quadfit
    obj = scipy_objective(f, data=data)
    res = scipy_optimize.minimize(obj.fun, p0, jac=obj.jac, hessp=obj.hessp, method="Newton-CG")
    t, y = data["t"], data["y"]
    np.testing.assert_allclose(res.x, np.polyfit(t, y, 2), rtol=1e-6)
    np.testing.assert_allclose(obj.hess(res.x), f.hessian(res.x, **data))


def test_result_repr_is_short():
    res = minimize(seed_rosen, [2.0, 2.0], optimizer=optim.sgd(0.1), steps=1000)
    assert "History(1001 records, last step 1000, 0 epochs)" in repr(res)
    assert len(repr(res)) < 400
