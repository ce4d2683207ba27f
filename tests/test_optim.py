"""Optimizers: one step equals the closed-form equation; each converges with its tested settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symgrad import optim, schedules
from symgrad.train import minimize

RNG_SEED = 20240611


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def _arrays(rng, n=5):
    return rng.normal(size=n), rng.normal(size=n), rng.normal(size=n), np.abs(rng.normal(size=n))


# --------------------------------------------------------------------------- one step, closed form
# The oracles are written per component with Python floats, independently of the NumPy code.


def test_sgd_one_step(rng):
    x, g, _, _ = _arrays(rng)
    opt = optim.sgd(lr=0.05)
    new, state = opt.update(g, opt.init(x), x, 0)
    assert state == ()
    np.testing.assert_allclose(
        new, [xi - 0.05 * gi for xi, gi in zip(x, g, strict=True)], rtol=1e-15
    )


def test_momentum_one_step_from_a_nonzero_velocity(rng):
    x, g, v, _ = _arrays(rng)
    lr, beta = 0.05, 0.8
    new, (v_new,) = optim.momentum(lr=lr, beta=beta).update(g, (v,), x, 3)
    v_ref = [beta * vi - lr * gi for vi, gi in zip(v, g, strict=True)]
    np.testing.assert_allclose(v_new, v_ref, rtol=1e-15)
    np.testing.assert_allclose(new, [xi + vi for xi, vi in zip(x, v_ref, strict=True)], rtol=1e-15)


def test_momentum_matches_matlab_sgdmupdate_two_steps():
    opt = optim.momentum(lr=0.1, beta=0.5)
    x = np.array([1.0])
    s = opt.init(x)
    x, s = opt.update(np.array([1.0]), s, x, 0)  # v = -0.1, x = 0.9
    x, s = opt.update(np.array([1.0]), s, x, 1)  # v = -0.05 - 0.1 = -0.15, x = 0.75
    assert x[0] == pytest.approx(0.75, rel=1e-15)
    assert s[0][0] == pytest.approx(-0.15, rel=1e-15)


def test_nesterov_one_step_from_a_nonzero_velocity(rng):
    x, g, v, _ = _arrays(rng)
    lr, beta = 0.05, 0.8
    new, (v_new,) = optim.nesterov(lr=lr, beta=beta).update(g, (v,), x, 3)
    v_ref = [beta * vi - lr * gi for vi, gi in zip(v, g, strict=True)]
    x_ref = [xi + beta * vi - lr * gi for xi, vi, gi in zip(x, v_ref, g, strict=True)]
    np.testing.assert_allclose(v_new, v_ref, rtol=1e-15)
    np.testing.assert_allclose(new, x_ref, rtol=1e-15)


@pytest.mark.parametrize("step", [0, 4])
def test_adam_one_step_with_bias_correction(rng, step):
    x, g, m, v = _arrays(rng)
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    new, (m_new, v_new) = optim.adam(lr=lr, b1=b1, b2=b2, eps=eps).update(g, (m, v), x, step)
    t = step + 1
    m_ref = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
    v_ref = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g, strict=True)]
    x_ref = [
        xi - lr * (mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps)
        for xi, mi, vi in zip(x, m_ref, v_ref, strict=True)
    ]
    np.testing.assert_allclose(m_new, m_ref, rtol=1e-14)
    np.testing.assert_allclose(v_new, v_ref, rtol=1e-14)
    np.testing.assert_allclose(new, x_ref, rtol=1e-14)


def test_adam_first_step_moves_each_coordinate_by_lr():
    opt = optim.adam(lr=0.1, eps=1e-12)
    x = np.array([1.0, 1.0, 1.0])
    new, _ = opt.update(np.array([3.0, -0.5, 1e-3]), opt.init(x), x, 0)
    np.testing.assert_allclose(new, [0.9, 1.1, 0.9], rtol=1e-8)


def test_rmsprop_one_step(rng):
    x, g, _, s = _arrays(rng)
    lr, rho, eps = 0.01, 0.7, 1e-7
    new, (s_new,) = optim.rmsprop(lr=lr, rho=rho, eps=eps).update(g, (s,), x, 2)
    s_ref = [rho * si + (1 - rho) * gi**2 for si, gi in zip(s, g, strict=True)]
    x_ref = [xi - lr * gi / (math.sqrt(si) + eps) for xi, gi, si in zip(x, g, s_ref, strict=True)]
    np.testing.assert_allclose(s_new, s_ref, rtol=1e-14)
    np.testing.assert_allclose(new, x_ref, rtol=1e-14)


def test_adagrad_one_step(rng):
    x, g, _, s = _arrays(rng)
    lr, eps = 0.3, 1e-9
    new, (s_new,) = optim.adagrad(lr=lr, eps=eps).update(g, (s,), x, 2)
    s_ref = [si + gi**2 for si, gi in zip(s, g, strict=True)]
    x_ref = [xi - lr * gi / (math.sqrt(si) + eps) for xi, gi, si in zip(x, g, s_ref, strict=True)]
    np.testing.assert_allclose(s_new, s_ref, rtol=1e-15)
    np.testing.assert_allclose(new, x_ref, rtol=1e-15)


# --------------------------------------------------------------------------- purity, schedules

ALL = ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"]


@pytest.mark.parametrize("name", ALL)
def test_update_is_pure(rng, name):
    opt = getattr(optim, name)(lr=0.1)
    x, g = rng.normal(size=4), rng.normal(size=4)
    state = opt.init(x)
    assert all(s.shape == x.shape and not s.any() for s in state)
    x_copy, g_copy = x.copy(), g.copy()
    s1 = opt.update(g, state, x, 0)[1]
    s_copy = [s.copy() for s in s1]
    a = opt.update(g, s1, x, 1)
    b = opt.update(g, s1, x, 1)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(g, g_copy)
    for s, c in zip(s1, s_copy, strict=True):
        np.testing.assert_array_equal(s, c)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("name", ALL)
def test_learning_rate_schedule_is_read_at_the_step(name):
    sched = schedules.step(0.1, step_size=1, gamma=0.5)
    x = np.array([1.0, -2.0])
    g = np.array([0.3, 0.7])
    with_sched = getattr(optim, name)(lr=sched)
    state = with_sched.init(x)
    a = with_sched.update(g, state, x, 3)[0]
    b = getattr(optim, name)(lr=sched(3)).update(g, state, x, 3)[0]
    np.testing.assert_array_equal(a, b)
    assert with_sched.learning_rate(3) == 0.0125


@pytest.mark.parametrize("name", ALL)
def test_numeric_spec(name):
    opt = getattr(optim, name)()
    assert opt.rule is getattr(optim, f"{name}_rule")  # one definition: the rule
    assert len(opt.init(np.zeros(3))) == opt.n_state
    assert opt.hyper_array.dtype == np.float64
    assert list(opt.hyper_array[: len(opt.hyper)]) == list(opt.hyper.values())
    assert {k: v for k, v in optim.DEFAULTS[name].items() if k != "lr"} == dict(opt.hyper)
    assert opt.learning_rate(0) == optim.DEFAULTS[name]["lr"]
    assert name in repr(opt)


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: optim.sgd(lr=0.0), ValueError, "lr must be > 0"),
        (lambda: optim.sgd(lr="fast"), TypeError, "lr must be a float or a schedule"),
        (lambda: optim.momentum(beta=1.0), ValueError, "beta"),
        (lambda: optim.nesterov(beta=-0.1), ValueError, "beta"),
        (lambda: optim.adam(b2=1.5), ValueError, "b2"),
        (lambda: optim.adam(eps=0.0), ValueError, "eps"),
        (lambda: optim.rmsprop(rho=float("nan")), ValueError, "rho"),
        (lambda: optim.adagrad(eps=-1.0), ValueError, "eps"),
    ],
)
def test_invalid_hyperparameters_are_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# --------------------------------------------------------------------------- convergence

A = np.array([[3.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])


def quadratic(x):
    return 0.5 * x @ A @ x - B @ x, A @ x - B


def rosenbrock(x):
    a, b = x[1] - x[0] ** 2, 1.0 - x[0]
    return 100 * a * a + b * b, np.array([-400 * x[0] * a - 2 * b, 200 * a])


PROBLEMS = {
    "quadratic": (quadratic, np.zeros(2), np.linalg.solve(A, B)),
    "rosenbrock": (rosenbrock, np.array([-1.2, 1.0]), np.ones(2)),
}


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock"])
@pytest.mark.parametrize("name", ALL)
def test_converges_with_tested_hyperparameters(problem, name):
    hp = dict(optim.TESTED_HYPERPARAMETERS[problem][name])
    steps = hp.pop("steps")
    f, x0, x_star = PROBLEMS[problem]
    res = minimize(f, x0, optimizer=getattr(optim, name)(**hp), steps=steps, record_every=0)
    assert res.status == "completed", res.message
    assert np.linalg.norm(res.x - x_star) < 1e-5


def test_a_user_defined_optimizer_runs_in_the_python_loop():
    def sign_sgd(lr):
        lr_ = schedules.as_schedule(lr)
        return optim.Optimizer(
            "sign_sgd",
            init=lambda x: (),
            update=lambda g, s, x, k: (x - lr_(k) * np.sign(g), s),
            lr=lr_,
        )

    res = minimize(quadratic, [0.0, 0.0], optimizer=sign_sgd(schedules.time_decay(0.1, 0.1)),
                   steps=500)  # fmt: skip
    assert res.status == "completed"
    assert not res.compiled
    np.testing.assert_allclose(res.x, np.linalg.solve(A, B), atol=0.05)


# --------------------------------------------------------------------------- import discipline


@pytest.mark.parametrize("module", ["train/optim", "train/schedules", "train/run", "train/plan",
                                    "train/python_loop", "train/compiled", "train/result",
                                    "scipy_interop"])
def test_module_does_not_import_numba_sympy_or_scipy_at_import_time(module):
    """Numba only inside the compiled-loop builder; SymPy and SciPy never."""
    import ast
    from pathlib import Path

    import symgrad

    src = (Path(symgrad.__file__).parent / f"{module}.py").read_text()
    top = set()
    for node in ast.parse(src).body:  # module level only (function bodies may import lazily)
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            top.add(node.module.split(".")[0])
    assert not top & {"numba", "sympy", "scipy"}, top
    everywhere = {
        (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    assert not everywhere & {"sympy", "scipy"}, everywhere
