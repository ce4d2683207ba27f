"""Issue 11, runtime half: aliasing outputs, batch indices, IEEE arithmetic and divergence
messages, reductions without data, misspelt CLI columns, and what an "ok" check means."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad import cli, optim
from symgrad.ir.problem import ProblemError

X0 = np.array([0.5, 0.5, 0.5, 0.5])
VG0 = (19.5, [-51.0, -1.0, -1.0, 50.0])  # extended Rosenbrock at X0


@pytest.fixture(scope="module")
def rosen_vec():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    return sg.compile(sg.sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2,
                             (i, 0, x.length - 1)))


@pytest.fixture(scope="module")
def line_fit():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile(sg.mean((a * t + b - y) ** 2))


@pytest.fixture(scope="module")
def inv():
    q, r = sg.params("q r")
    return sg.compile(1 / q + r**2)


# --------------------------------------------------------------------------- item 3: aliasing


def test_vector_kernel_refuses_out_aliasing_x(rosen_vec):
    f = rosen_vec
    v, g = f.value_and_grad(X0.copy())
    assert v == VG0[0] and g.tolist() == VG0[1]
    x = X0.copy()
    with pytest.raises(ValueError, match=r"out .* overlaps x"):
        f.value_and_grad(x, out=x)  # the fast path
    assert x.tolist() == X0.tolist()  # refused before anything was written
    with pytest.raises(ValueError, match="overlaps x"):
        f.grad(x, out=x)
    with pytest.raises(ValueError, match="overlaps x"):
        f.jit.value_and_grad(x, x)
    with pytest.raises(ValueError, match="overlaps x"):
        f.value_and_grad(x, x[:])  # a view of x
    buf = np.zeros(8)
    buf[:4] = X0
    with pytest.raises(ValueError, match="overlaps x"):
        f.value_and_grad(buf[:4], out=buf[2:6])  # partial overlap


def test_hvp_and_hessian_refuse_overlapping_out(rosen_vec, line_fit):
    x, v = X0.copy(), np.ones(4)
    ref = rosen_vec.hvp(x, v)
    with pytest.raises(ValueError, match="overlaps x"):
        rosen_vec.hvp(x, v, out=x)
    with pytest.raises(ValueError, match="overlaps v"):
        rosen_vec.hvp(x, v, out=v)
    assert v.tolist() == [1.0] * 4 and rosen_vec.hvp(x, v).tolist() == ref.tolist()
    H = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"Hessian H.* overlaps x"):
        rosen_vec.hessian(H[0], out=H)
    data = {"t": np.arange(4.0), "y": np.arange(4.0) * 2}
    xb = np.array([1.0, 0.5])
    for fn in (lambda: line_fit.value_and_grad(xb, out=xb, **data),
               lambda: line_fit.hvp(xb, xb.copy(), out=xb, **data),
               lambda: line_fit.bind(**data).value_and_grad(xb, out=xb),
               lambda: line_fit.bind(**data).hvp(xb, np.ones(2), out=xb)):
        with pytest.raises(ValueError, match="overlaps x"):
            fn()


def test_bound_kernel_refuses_aliasing(rosen_vec):
    x = X0.copy()
    with pytest.raises(ValueError, match="overlaps"):
        rosen_vec.bind().value_and_grad(x, out=x)


def test_disjoint_out_still_works(rosen_vec):
    buf = np.zeros(8)
    buf[:4] = X0
    v, g = rosen_vec.value_and_grad(buf[:4], out=buf[4:])
    assert v == VG0[0] and g.tolist() == VG0[1]


# --------------------------------------------------------------------------- item 4: batch


def test_generated_code_checks_batch_indices(line_fit):
    f = line_fit
    T, Y = np.arange(5.0), 2 * np.arange(5.0)
    x = np.array([1.0, 0.0])
    for bad in (np.array([5]), np.array([10**9]), np.array([-1]), np.array([0, 7, 2])):
        out = bad[(bad < 0) | (bad >= 5)][0]
        # the index and N are the exception's arguments (str(int) costs 1.3 s of compile)
        with pytest.raises(ValueError, match=r"batch \(idx\): a sample index is outside "
                           rf"\[0, N\).*\(the index, N\):', {out}, 5\)$"):
            f.jit.value(x, T, Y, bad)
        with pytest.raises(ValueError, match="outside"):
            f.jit.value_and_grad(x, np.empty(2), T, Y, bad)
        with pytest.raises(ValueError, match="outside"):
            f.jit.hvp(x, np.ones(2), np.empty(2), T, Y, bad)
    with pytest.raises(ValueError, match="selects no samples"):
        f.jit.value(x, T, Y, np.zeros(0, dtype=np.int64))
    assert f.jit.value(x, T, Y, np.array([4, 0])) == pytest.approx(8.0)  # (4 + 0) / 2
    mask = np.array([True, False, True, False, True])  # not read as the indices 1, 0, 1, 0, 1
    with pytest.raises(TypeError, match="not a boolean mask"):
        f.jit.value(x, T, Y, mask)


def test_kernel_batch_validation(line_fit):
    T, Y = np.arange(5.0), 2 * np.arange(5.0)
    x = np.array([1.0, 0.0])
    with pytest.raises(IndexError, match="batch indices"):
        line_fit.value(x, t=T, y=Y, batch=[5])
    with pytest.raises(ValueError, match="boolean batch mask must have shape"):
        line_fit.value(x, t=T, y=Y, batch=np.ones(4, dtype=bool))
    # negative indices count from the end, as in NumPy
    assert line_fit.value(x, t=T, y=Y, batch=[-1]) == line_fit.value(x, t=T, y=Y, batch=[4])


# --------------------------------------------------------------------------- item 14: IEEE


def test_division_by_zero_gives_inf_not_an_exception(inv):
    v, g = inv.value_and_grad([0.0, 1.0])
    assert v == np.inf and g[0] == -np.inf and g[1] == 2.0
    assert inv.value([0.0, 1.0]) == np.inf
    assert not np.isfinite(inv.value_complex([0.0, 1.0]))  # complex division agrees
    q = sg.params("q")
    t = sg.data("t")
    fd = sg.compile(sg.mean(t / q))
    assert fd.value([0.0], t=np.ones(3)) == np.inf


@pytest.mark.parametrize("compiled", [False, True])
def test_minimize_reports_a_pole_at_the_start(inv, compiled):
    res = sg.minimize(inv, [0.0, 1.0], steps=50, optimizer=optim.sgd(0.1), compiled=compiled)
    assert res.status == "diverged" and res.nit == 0 and not res.success
    assert res.message.startswith("non-finite at the starting point (step 0)")
    assert "q=0" in res.message and "learning rate" not in res.message


@pytest.mark.parametrize("compiled", [False, True])
def test_minimize_sqrt_of_negative_start_and_later_step(compiled):
    q = sg.params("q")
    f = sg.compile(sympy.sqrt(q))
    res = sg.minimize(f, [-1.0], steps=50, optimizer=optim.sgd(1.0), compiled=compiled)
    assert res.status == "diverged" and res.nit == 0
    assert "not defined there" in res.message and "learning rate" not in res.message
    res = sg.minimize(f, [1.0], steps=50, optimizer=optim.sgd(1.0), compiled=compiled)
    assert res.status == "diverged" and res.nit == 2
    assert res.message.startswith("diverged at step 2") and "smaller learning rate" in res.message


# --------------------------------------------------------------------------- item 15


def test_reduction_without_data_is_a_problem_error():
    q = sg.params("q")
    with pytest.raises(ProblemError, match=r"sg.mean\(sin\(q\)\) reads no data column"):
        sg.compile(sg.mean(sympy.sin(q)))
    # with a column elsewhere the number of samples is known: mean of a constant term
    t = sg.data("t")
    f = sg.compile(sg.mean(sympy.sin(q)) + sg.mean((q - t) ** 2))
    assert f.value([0.5], t=np.array([0.0, 1.0])) == pytest.approx(np.sin(0.5) + 0.25)


def test_cli_reduction_without_data(capsys):
    assert cli.main(["check", "mean(sin(q))", "--at", "1"]) == 2
    assert "reads no data column" in capsys.readouterr().err


# --------------------------------------------------------------------------- item 5: CLI


@pytest.fixture
def pts(tmp_path):
    p = tmp_path / "pts.csv"
    t = np.arange(6.0)
    p.write_text("t,y\n" + "\n".join(f"{a},{2 * a + 1}" for a in t) + "\n")
    return p


def test_cli_misspelt_column_is_an_error(pts, capsys):
    code = cli.main(["minimize", "mean((a*t + b - Y)**2)", "--data-file", str(pts),
                     "--steps", "5", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'Y' is not a column" in err and "t, y" in err and "did you mean 'y'" in err
    code = cli.main(["check", "mean((a*tt + b - y)**2)", "--data-file", str(pts)])
    assert code == 2 and "did you mean 't'" in capsys.readouterr().err
    code = cli.main(["check", "mean((a*t + b - Y)**2)", "--data", "t Y", "--data-file",
                     str(pts)])
    err = capsys.readouterr().err
    assert code == 2 and "--data names 'Y'" in err and "did you mean 'y'" in err
    # --params declares a parameter of that name on purpose
    code = cli.main(["minimize", "mean((a*t + b - y)**2) + (Y - 1)**2", "--params", "a b Y",
                     "--data-file", str(pts), "--steps", "5", "--quiet"])
    assert code == 0


# -m slow (4 s of compile, cold; test_cli_misspelt_column_is_an_error stays quick)
@pytest.mark.slow
def test_cli_warns_about_unused_columns(pts, capsys):
    code = cli.main(["minimize", "mean((a*t + b)**2)", "--data-file", str(pts), "--steps", "5",
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: data column(s) not used by the loss: y" in err
    code = cli.main(["minimize", "mean((a*t + b - y)**2)", "--data-file", str(pts),
                     "--steps", "5", "--quiet"])
    assert code == 0 and "warning" not in capsys.readouterr().err


# --------------------------------------------------------------------------- item 6: checker


@pytest.fixture(scope="module")
def l1_fit():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile(sg.mean(abs(a * t + b - y)))


def _l1_data(exact_sample: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 2000)
    y = 2.0 * t + 1.0 + rng.uniform(-1e-3, 1e-3, t.size)  # every residual near its kink
    if exact_sample:
        t[7], y[7] = 1.0, 3.0  # residual exactly 0 at (a, b) = (2, 1)
    return {"t": t, "y": y}


def test_check_verifies_components_near_many_data_kinks(l1_fit):
    chk = sg.check_grad(l1_fit, [2.0, 1.0], data=_l1_data(False))
    assert set(chk.kinks) == {0, 1}  # the first step crosses some sample's kink...
    assert chk.unverified == () and chk.ok, chk.table()  # ...a smaller step verifies them
    assert chk.max_rel_err < 1e-6


def test_check_at_a_data_kink_is_not_ok(l1_fit):
    # |r| at r = 0: sign(0) = 0 is the symmetric difference quotient, which checks it
    assert sg.check_grad(l1_fit, [2.0, 1.0], data=_l1_data(True)).ok
    # relu(r) at r = 0: relu'(0) = 0 is a convention, one-sided slopes 0 and 1: not verifiable
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean(sg.relu(a * t + b - y)))
    chk = sg.check_grad(f, [2.0, 1.0], data=_l1_data(True))
    assert not chk.ok and set(chk.unverified) == {0, 1}, chk.table()
    assert "NOT VERIFIED" in chk.summary()
    assert any("not verified" in n and "a, b" in n for n in chk.notes)


def test_check_at_a_parameter_kink_uses_the_exact_oracle():
    x1, x2 = sg.params("x1 x2")
    f = sg.compile(sg.relu(x1 - 0.5) + abs(x2) + x1 * x2)
    chk = sg.check_grad(f, [0.5, 0.0])  # both on their kinks: relu'(0) = 0, sign(0) = 0
    assert chk.kinks == (0, 1) and chk.unverified == () and chk.ok, chk.table()


def test_cli_check_at_a_kink_is_not_ok(tmp_path, capsys):
    d = _l1_data(True)
    p = tmp_path / "pts.csv"
    p.write_text("t,y\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(d["t"], d["y"],
                                                                     strict=True)) + "\n")
    code = cli.main(["check", "mean(relu(a*t + b - y))", "--data-file", str(p), "--at", "2,1"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT VERIFIED" in out and " ok " not in out.splitlines()[2]
