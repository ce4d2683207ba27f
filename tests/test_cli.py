"""The ``symgrad`` command and its safe expression parser."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad import cli
from symgrad.lang.parse import ExprError, param_names, parse_loss

ROSEN = "(x2 - x1**2)**2 + (1 - x1)**2"
ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- exprparse


@pytest.mark.parametrize("text, fragment", [
    ("x.__class__", "attribute access"),
    ("__import__('os').system('true')", "calling anything but a plain function name"),
    ("__import__('os')", "names starting with '_'"),
    ("a + __builtins__", "names starting with '_'"),
    ("open('f')", "unknown function 'open'"),
    ("x[0]", "indexing"),
    ("lambda: 1", "lambda"),
    ("x^2", "write ** instead"),
    ("exp(x=1)", "keyword argument"),
    ("'text'", "constant"),
    ("x if y else z", "conditional"),
    ("2**10**100", "exponent"),
    ("x < 1", "comparison"),
    ("exp", "is a function"),
    ("max(x)", "at least 2"),
    ("x; y", "not a valid expression"),
    ("(" * 300 + "x" + ")" * 300, "not a valid expression"),
    ("x" * 30_000, "characters long"),
])
def test_unsafe_or_invalid_expressions_are_rejected(text, fragment):
    with pytest.raises(ExprError, match=None) as exc:
        parse_loss(text)
    assert fragment in str(exc.value)


def test_parse_builds_symgrad_symbols():
    e = parse_loss("mean((a*t**2 + b*t + c - y)**2) + 1e-3*relu(a)", data="t y")
    f = sg.compile(e, [sg.params(n) for n in param_names("", "a b c")])
    t = np.arange(5.0)
    y = 2 * t**2 + 1
    assert f.params == ("a", "b", "c") and f.data_names == ("t", "y")
    assert f.value([2.0, 0.0, 1.0], t=t, y=y) == pytest.approx(2e-3)


def test_default_parameter_order_is_natural_not_first_appearance():
    assert param_names(ROSEN) == ["x1", "x2"]
    assert param_names("x10*x2 + x1", data="x1") == ["x2", "x10"]


def test_explicit_params_reject_unknown_names():
    with pytest.raises(ExprError, match="unknown name 'c'"):
        parse_loss("a*b + c", params="a b")
    with pytest.raises(ExprError, match="both as a parameter and as data"):
        parse_loss("a*t", params="a t", data="t")


# --------------------------------------------------------------------------- commands


def test_generate_from_expression(tmp_path, capsys):
    out = tmp_path / "rosen.py"
    code, text, _ = run(capsys, "generate", ROSEN, "-o", str(out))
    assert code == 0 and str(out) in text
    src = out.read_text()
    assert "# parameters (order of x): x1, x2" in src
    assert "regenerate with: symgrad generate" in src
    mod = sg.runtime.scalar.load_module(out)
    g = np.empty(2)
    assert mod.value_and_grad(np.array([2.0, 2.0]), g) == 5.0
    assert g.tolist() == [18.0, -4.0]


def test_generate_from_python_file(tmp_path, capsys):
    f = tmp_path / "my_loss.py"
    f.write_text("def loss(x1, x2):\n    return (x2 - x1**2)**2 + (1 - x1)**2\n")
    out = tmp_path / "gen.py"
    code, _, _ = run(capsys, "generate", str(f), "-o", str(out))
    assert code == 0 and "value_and_grad" in out.read_text()


def test_check_prints_the_table(capsys):
    code, out, _ = run(capsys, "check", ROSEN, "--at", "2,2")
    assert code == 0
    assert "gradient check ok" in out
    assert "x1" in out and "18" in out and "-4" in out


def test_check_with_data_file(tmp_path, capsys):
    csv = tmp_path / "pts.csv"
    csv.write_text("t,y\n0,1\n1,3\n2,5.5\n")
    code, out, _ = run(capsys, "check", "mean(abs(a*t + b - y))", "--data-file", str(csv),
                       "--at", "2,1.3", "--hessian")  # no residual exactly 0: no kink
    assert code == 0, out
    assert "gradient check ok" in out and "hessian check" in out


def test_minimize_reproduces_the_seed(tmp_path, capsys):
    png = tmp_path / "m.png"
    code, out, _ = run(capsys, "minimize", ROSEN, "--x0", "2,2", "--lr", "0.1", "--steps", "100",
                       "-q", "--plot", str(png))
    assert code == 0
    values = dict(line.split(" = ") for line in out.splitlines() if line.startswith("  "))
    assert float(values["  x1"]) == pytest.approx(1.0088, abs=5e-5)
    assert float(values["  x2"]) == pytest.approx(1.0214, abs=5e-5)
    assert png.is_file()


@pytest.mark.parametrize("extra", [(), ("--optimizer", "newton")])
def test_minimize_without_an_optimizer_converges(capsys, extra):
    """Regression: the default was sgd(lr=1e-3) for 1000 steps, which stopped near (0.65, 0.35)
    from the seed's start, reported as "completed"."""
    code, out, _ = run(capsys, "minimize", ROSEN, "--x0=-1.2,1", "-q", *extra)
    assert code == 0 and "converged at step" in out
    values = dict(line.split(" = ") for line in out.splitlines() if line.startswith("  "))
    assert float(values["  x1"]) == pytest.approx(1.0, abs=1e-5)
    assert float(values["  x2"]) == pytest.approx(1.0, abs=1e-5)


def test_minimize_with_schedule_and_momentum(capsys):
    code, out, _ = run(capsys, "minimize", ROSEN, "--x0", "2,2", "--optimizer", "momentum",
                       "--lr", "0.01", "--beta", "0.9", "--schedule", "time_decay:0.001",
                       "--steps", "500", "-q")
    assert code == 0 and "completed" in out


def test_parse_schedule():
    assert cli.parse_schedule(None, 0.1) == 0.1
    s = cli.parse_schedule("time_decay:0.01", 0.2)
    assert s(100) == pytest.approx(0.1)
    assert cli.parse_schedule("step:10:0.5", 1.0)(25) == 0.25
    with pytest.raises(cli.CLIError):
        cli.parse_schedule("nope:1", 0.1)
    assert cli.parse_schedule("cosine:10", 1.0).decay_steps == 10
    for spec in ("step:2.5", "cosine:10.9", "step:inf"):  # were truncated to 2 and 10
        with pytest.raises(cli.CLIError, match="must be a whole number of steps"):
            cli.parse_schedule(spec, 0.1)


@pytest.mark.parametrize("argv, fragment", [
    (["minimize", "x.y"], "attribute access"),
    (["minimize", "x**2", "--x0", "1,2"], "has 2 values but the loss has 1 parameters"),
    (["minimize", "x**2", "--schedule", "foo:1"], "unknown schedule"),
    (["minimize", "missing_file.py"], "no such file"),
    (["check", "mean((a*t - y)**2)", "--data", "t,y"], "needs data columns t, y"),
    (["minimize", "x**2", "--x0", "abc"], "numbers separated by commas"),
    (["minimize", "x**2", "--lr", "-1"], "--lr must be > 0"),
    (["minimize", "x**2", "--optimizer", "lbfgs", "--lr", "0.1"],
     "--lr: for the first-order optimizers; lbfgs chooses"),
    (["check", "a*t", "--data", "t", "--data-file", "nope.csv"], "not found"),
])
def test_errors_are_one_line_with_exit_2(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_exit_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err


def test_python_m_symgrad_runs_without_traceback():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SYMGRAD_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "symgrad", "generate", "os.system('x')", "-o",
                        "x.py"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("symgrad generate: error: calling anything but a plain")
    assert "Traceback" not in p.stderr
    v = subprocess.run([sys.executable, "-m", "symgrad", "--version"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert v.returncode == 0 and v.stdout.strip() == f"symgrad {sg.__version__}"


# --------------------------------------------------------------------------- demo


# test_demo_runs_the_seed_scenarios is in test_examples.py: it runs the same example scripts, so
# next to them (one worker, after they ran) its kernels are already compiled.


def test_demo_without_the_example_scripts_says_what_to_do(tmp_path, capsys):
    """A non-editable install has no examples/: a one-line error, not a traceback."""
    code = cli.main(["demo", "--out", str(tmp_path / "out"), "--examples", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "runs the example scripts of a source checkout" in err
    assert "pip install -e ." in err and "--examples DIR" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- fit (least squares)


def _decay_csv(tmp_path) -> Path:
    t = np.linspace(0, 7, 30)
    y = 3 * np.exp(-0.7 * t) + 0.5 + 0.01 * np.random.default_rng(3).standard_normal(30)
    path = tmp_path / "decay.csv"
    np.savetxt(path, np.column_stack([t, y]), delimiter=",", header="t,y", comments="")
    return path


def test_fit_prints_estimates_with_standard_errors(tmp_path, capsys):
    csv = _decay_csv(tmp_path)
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--p0", "a=1", "b=0.1",
                       "c=0")
    assert code == 0, out
    rows = {ln.split()[0]: ln.split()[1:3] for ln in out.splitlines()
            if ln.strip()[:2] in ("a ", "b ", "c ")}
    fit = sg.least_squares(parse_loss("a*exp(-b*t) + c - y", data="t y"), [1, 0.1, 0],
                           params=[sg.params(n) for n in "abc"],
                           data=cli.read_data_file(csv))
    for name, est, se in zip("abc", fit.x, fit.stderr, strict=True):
        assert float(rows[name][0]) == pytest.approx(est, rel=1e-8)
        assert float(rows[name][1]) == pytest.approx(se, rel=1e-5)
    code2, out2, _ = run(capsys, "fit", "a*exp(-b*t) + c", str(csv), "--response", "y",
                         "--p0", "1,0.1,0", "--method", "precise")
    assert code2 == 0 and rows["a"][0] in out2


def test_fit_errors_are_one_line(tmp_path, capsys):
    csv = _decay_csv(tmp_path)
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--p0", "q=1")
    assert code == 2 and "NAME one of a, b, c" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "fit", "a*b + c", str(csv))
    assert code == 2 and "none of the data columns" in err


# --------------------------------------------------------------------------- data files (issue 24)


def _csv(tmp_path, header: str, rows: np.ndarray, name: str = "d.csv") -> Path:
    path = tmp_path / name
    np.savetxt(path, rows, delimiter=",", header=header, comments="")
    return path


def _decay_rows(n: int = 30, extra: int = 0) -> np.ndarray:
    t = np.linspace(0, 7, n)
    y = 3 * np.exp(-0.7 * t) + 0.5 + 0.01 * np.random.default_rng(3).standard_normal(n)
    return np.column_stack([t, y, *np.random.default_rng(4).standard_normal((extra, n))])


@pytest.mark.parametrize("argv", [
    ["fit", "a*exp(-b*t) + c - y", "{csv}"],
    ["check", "mean((a*t - y)**2)", "--data-file", "{csv}"],
    ["minimize", "mean((a*t - y)**2)", "--data-file", "{csv}", "--steps", "2", "-q"],
])
def test_duplicate_column_names_are_refused(tmp_path, capsys, argv):
    """Issue 24 item 7: a header 't,t,y' kept the last 't' and fitted it, exit 0."""
    rows = _decay_rows()
    csv = _csv(tmp_path, "t,t,y", np.column_stack([rows[:, 0], rows[:, 0] * 2, rows[:, 1]]))
    code, out, err = run(capsys, *[a.format(csv=csv) for a in argv])
    assert code == 2 and out == ""
    assert "the column name 't' appears twice in the header (columns 1 and 2)" in err
    assert len(err.strip().splitlines()) == 1


def test_fit_refuses_a_misspelt_column(tmp_path, capsys):
    """Issue 24 item 13: 'tt' for the column 't' became a parameter, exit 0."""
    csv = _csv(tmp_path, "t,y", _decay_rows())
    code, out, err = run(capsys, "fit", "a*exp(-b*tt) + c - y", str(csv))
    assert code == 2 and out == ""
    assert "'tt' is not a column of" in err and "(columns: t, y)" in err
    assert "did you mean 't'" in err and "Warning" not in err
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c", str(csv), "--response", "yy")
    assert code == 2 and "--response 'yy' is not a column" in err and "'y'" in err


def test_fit_refuses_parameters_the_data_cannot_determine(tmp_path, capsys):
    """A name unlike any column ('time') is a parameter; the data cannot determine it: an
    error naming it and the columns, not a raw UnidentifiableWarning and exit 0."""
    csv = _csv(tmp_path, "t,y", _decay_rows())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes as a raw warning
        code, out, err = run(capsys, "fit", "a*exp(-b*time) + c - y", str(csv))
    assert code == 1
    assert "not identifiable" in out  # the table is still shown
    line = err.strip().splitlines()[-1]
    assert line.startswith("symgrad fit: error: the data cannot determine the parameter(s)")
    assert "time" in line and "(columns: t, y)" in line and "Traceback" not in err


def test_fit_ignores_unused_columns_with_awkward_names(tmp_path, capsys):
    """Issue 24 item 21: an unused column named max, sum, log or _id aborted the fit."""
    rows = _decay_rows(extra=5)
    csv = _csv(tmp_path, "t,y,max,sum,log,_id,temp (C)", rows)
    plain = _csv(tmp_path, "t,y", rows[:, :2], "plain.csv")
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv))
    code0, out0, _ = run(capsys, "fit", "a*exp(-b*t) + c - y", str(plain))
    assert code == code0 == 0
    assert out.splitlines()[1:] == out0.splitlines()[1:]  # the same fit (line 0 names no file)
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--data", "t,y")
    assert code == 0 and out.splitlines()[1:] == out0.splitlines()[1:]
    code, _, err = run(capsys, "check", "mean((a*t - y)**2)", "--data-file", str(csv),
                       "--at", "1")
    assert code == 0 and "not used by the loss: max, sum, log, _id, temp (C)" in err
    headless = _csv(tmp_path, "0.5,1.5", rows[:, :2], "headless.csv")
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c - y", str(headless))
    assert code == 2 and "the first row must name the columns" in err


def test_fit_data_option(tmp_path, capsys):
    csv = _csv(tmp_path, "t,y", _decay_rows())
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--data", "t,yy")
    assert code == 2 and "--data names 'yy', which is not a column" in err
    assert "did you mean 'y'" in err


def test_fit_refuses_more_parameters_than_compile_in_seconds(tmp_path, capsys):
    from symgrad.lsq.command import MAX_PARAMS

    csv = _csv(tmp_path, "t,y", _decay_rows())
    terms = " + ".join(f"a{k}*t**{k % 5}" for k in range(MAX_PARAMS + 1))
    code, _, err = run(capsys, "fit", f"{terms} - y", str(csv))
    assert code == 2 and f"has {MAX_PARAMS + 1} parameters" in err
    assert f"at most {MAX_PARAMS}" in err


def test_missing_column_message_names_what_was_passed():
    """The new user's session: 'missing data column y' said nothing of the 'yy' passed."""
    a = sg.params("a_yy")
    t, y = sg.data("t y")
    data = {"t": np.arange(3.0), "yy": np.arange(3.0)}
    with pytest.raises(TypeError, match=r"missing data column 'y'.*got 'yy'.*misspelling"):
        sg.least_squares(a * t - y, [1.0], data=data)
    with pytest.raises(TypeError, match=r"missing data column 'y'.*got 'yy'"):
        sg.compile(sg.mean((a * t - y) ** 2)).value([1.0], **data)


def test_curve_fit_errors_name_the_arguments_as_written():
    """'data column ydata' named a column the user never wrote; p0 was called x0."""
    k = sg.params("k_cf")
    x = sg.data("x")
    with pytest.raises(ValueError, match=r"curve_fit: ydata has 5 values but the data column "
                                         r"'x' \(xdata\) has 4") as exc:
        sg.curve_fit(k * x, np.arange(4.0), np.arange(5.0), [1.0])
    assert "'ydata'" not in str(exc.value)
    with pytest.raises(ValueError, match=r"curve_fit: ydata has a non-finite value \(nan\) at "
                                         "row 2"):
        sg.curve_fit(k * x, np.arange(4.0), [1.0, 2.0, np.nan, 3.0], [1.0])
    with pytest.raises(ValueError, match=r"curve_fit: p0 has 2 values but the model has 1 "
                                         r"parameters \(k_cf\)"):
        sg.curve_fit(k * x, np.arange(4.0), np.arange(4.0), [1.0, 2.0])


@pytest.mark.slow  # -m slow (4 s of compile, cold; test_models keeps prediction quick)
def test_fit_predict_writes_the_fitted_curve_from_the_model(tmp_path, capsys):
    """issue 23 item 4: --predict writes the model's values at the data (a compiled model
    kernel), equal to NumPy at the fitted parameters; never over a file without --force."""
    csv = _decay_csv(tmp_path)
    out_csv = tmp_path / "curve.csv"
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--p0", "a=1", "b=0.1",
                       "c=0", "--predict", str(out_csv))
    assert code == 0 and f"to {out_csv}" in out, out
    rows = {ln.split()[0]: float(ln.split()[1]) for ln in out.splitlines()
            if ln.strip()[:2] in ("a ", "b ", "c ")}
    got = np.genfromtxt(out_csv, delimiter=",", names=True)
    assert got.dtype.names == ("t", "fitted", "residual")
    data = cli.read_data_file(csv)
    want = rows["a"] * np.exp(-rows["b"] * data["t"]) + rows["c"]  # the printed estimates
    np.testing.assert_allclose(got["fitted"], want, rtol=1e-5)
    np.testing.assert_allclose(got["residual"], got["fitted"] - data["y"], atol=1e-12)
    # an existing file is kept unless --force; the data file never
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c", str(csv), "--response", "y",
                       "--predict", str(out_csv))
    assert code == 2 and "--force" in err
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c", str(csv), "--response", "y",
                       "--predict", str(csv), "--force")
    assert code == 2 and "data file" in err
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c", str(csv), "--response", "y",
                       "--predict", str(out_csv), "--force")
    assert code == 0
    again = np.genfromtxt(out_csv, delimiter=",", names=True)
    np.testing.assert_allclose(again["fitted"], got["fitted"], rtol=1e-8)
    # a residual without a separate response column: the residuals only
    code, out, _ = run(capsys, "fit", "a*exp(-b*t) + c*y - y", str(csv), "--predict",
                       str(tmp_path / "r.csv"))
    assert np.genfromtxt(tmp_path / "r.csv", delimiter=",", names=True).dtype.names == (
        "t", "y", "residual")


def test_the_response_is_data_with_a_data_option(tmp_path, capsys):
    """``--response y --data t`` fitted y as a parameter (cost 0, every estimate 0, exit 0)."""
    rng = np.random.default_rng(5)
    t, y = rng.uniform(0, 3, 30), rng.standard_normal(30)
    csv = _csv(tmp_path, "t,y", np.column_stack([t, y]))
    code, out, _ = run(capsys, "fit", "a*t", str(csv), "--response", "y", "--data", "t")
    assert code == 0, out
    est = float(next(ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("a ")))
    assert est == pytest.approx(t @ y / (t @ t), rel=1e-9)


@pytest.mark.parametrize("header", ["# t,y", "t,y  # y in volts", '"t","y"'])
def test_a_commented_or_quoted_header_names_the_columns(tmp_path, capsys, header):
    """np.savetxt's '# t,y' named a column '# t', and minimize fitted t as a parameter."""
    t = np.linspace(0, 2, 20)
    y = 2 * t + 1 + 0.01 * np.sin(7 * t)
    csv = _csv(tmp_path, header, np.column_stack([t, y]))
    assert list(cli.read_data_file(csv)) == ["t", "y"]
    code, out, err = run(capsys, "minimize", "mean((a*t + b - y)**2)", "--data-file", str(csv))
    assert code == 0 and "not used" not in err, err
    got = {ln.split()[0]: float(ln.split()[2]) for ln in out.splitlines() if " = " in ln
           and ln.strip()[:2] in ("a ", "b ")}
    np.testing.assert_allclose([got["a"], got["b"]], np.polyfit(t, y, 1), rtol=1e-5)


def test_predict_keeps_a_data_column_named_fitted(tmp_path, capsys):
    x = np.linspace(0, 1, 6)
    csv = _csv(tmp_path, "fitted,y", np.column_stack([x, 3 * x + 1]))
    code, _, _ = run(capsys, "fit", "a*fitted + b", str(csv), "--response", "y",
                     "--predict", str(tmp_path / "p.csv"))
    got = np.genfromtxt(tmp_path / "p.csv", delimiter=",", names=True)
    assert code == 0 and got.dtype.names == ("fitted", "fitted_", "residual")
    np.testing.assert_array_equal(got["fitted"], x)  # the data column, not the model
    np.testing.assert_allclose(got["fitted_"], 3 * x + 1, atol=1e-9)


def test_predict_is_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    csv = _decay_csv(tmp_path)
    (tmp_path / "p.csv").write_text("mine\n")
    monkeypatch.setattr(sg, "least_squares", lambda *a, **k: pytest.fail("fitted first"))
    code, _, err = run(capsys, "fit", "a*exp(-b*t) + c - y", str(csv), "--predict",
                       str(tmp_path / "p.csv"))
    assert code == 2 and "--force" in err and (tmp_path / "p.csv").read_text() == "mine\n"


def test_p0_takes_one_value_per_name():
    from symgrad.lsq.command import parse_p0

    assert parse_p0(["a=2", "b=-1"], ["a", "b"]).tolist() == [2.0, -1.0]
    with pytest.raises(cli.CLIError, match="one value per NAME=VALUE"):
        parse_p0(["a=1,5"], ["a", "b"])  # the 5 was dropped
    with pytest.raises(cli.CLIError, match="gives a twice"):
        parse_p0(["a=1", "a=3"], ["a", "b"])


def test_the_sample_count_is_the_fitted_columns(tmp_path, capsys):
    npz = tmp_path / "d.npz"
    np.savez(npz, other=np.zeros(10), t=np.arange(5.0), y=2 * np.arange(5.0) + 1)
    code, out, _ = run(capsys, "fit", "c - y", str(npz), "--predict", str(tmp_path / "p.csv"))
    assert code == 0 and "(5 samples)" in out
    assert np.genfromtxt(tmp_path / "p.csv", delimiter=",", names=True).shape == (5,)


def test_check_and_minimize_print_a_vector_parameter_by_entry(tmp_path, capsys):
    """Zipping the parameter names (w, b) with x (3 entries) raised after the work was done."""
    src = tmp_path / "vec.py"
    src.write_text(
        "import numpy as np\nimport symgrad as sg\n"
        "w = sg.params('w', shape=(2,))\nb = sg.params('b')\n"
        "X = sg.data('X', shape=(2,))\ny = sg.data('y')\n"
        "loss = sg.mean((X @ w + b - y)**2)\n"
        "rng = np.random.default_rng(0)\nXd = rng.standard_normal((40, 2))\n"
        "data = {'X': Xd, 'y': Xd @ [1.5, -2.0] + 0.3}\n")
    code, out, _ = run(capsys, "check", str(src), "--at", "0.1,0.2,0.3")
    assert code == 0 and "'w[1]': 0.2" in out, out
    code, out, _ = run(capsys, "minimize", str(src))
    got = {ln.split()[0]: float(ln.split()[2]) for ln in out.splitlines() if " = " in ln
           and ln.startswith("  ")}
    assert code == 0 and list(got) == ["w[0]", "w[1]", "b"], out
    np.testing.assert_allclose(list(got.values()), [1.5, -2.0, 0.3], rtol=1e-6)
