"""Bad input is caught in the user's terms: which argument, what is wrong, what to do.

Data-column errors are covered with the data losses (tests of the data stage).
"""

from __future__ import annotations

import io
import tokenize
import warnings

import numpy as np
import pytest
import sympy as sp

import symgrad as sg


@pytest.fixture(scope="module")
def rosen() -> sg.Kernel:
    x1, x2 = sg.params("x1 x2")
    return sg.compile(100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2)


# -- the loss ----------------------------------------------------------------------------------

def test_unsupported_sympy_function_is_named():
    x = sg.params("x1")
    with pytest.raises(sg.ProblemError, match="besselj"):
        sg.compile(sp.besselj(0, x) + x**2)


def test_undefined_function_is_named():
    x = sg.params("x1")
    with pytest.raises(sg.ProblemError, match="'myfun'"):
        sg.compile(sp.Function("myfun")(x) ** 2)


@pytest.mark.parametrize("loss", ["matrix", "list"])
def test_non_scalar_loss_points_to_jacobian(loss):
    x1, x2 = sg.params("x1 x2")
    value = sp.Matrix([x1**2, x2]) if loss == "matrix" else [x1**2, x2]
    with pytest.raises(sg.ProblemError, match=r"sg\.jacobian"):
        sg.compile(value)


def test_python_function_returning_a_tuple():
    with pytest.raises(sg.ProblemError, match="scalar loss"):
        sg.compile(lambda x1, x2: (x1**2, 2 * x1))


def test_free_symbol_that_is_neither_parameter_nor_data_is_named():
    x1 = sg.params("x1")
    k = sp.Symbol("kappa", real=True)
    with pytest.raises(sg.ProblemError, match=r"'kappa'.*sg\.params"):
        sg.compile(k * x1**2)


def test_parameter_absent_from_the_loss_warns_and_has_zero_gradient():
    x1, x2 = sg.params("x1 x2")
    with pytest.warns(UserWarning, match="x2"):
        f = sg.compile(x1**2 + 3 * x1, params=[x1, x2])
    assert f.params == ("x1", "x2")
    val, g = f.value_and_grad(np.array([2.0, 5.0]))
    assert val == 10.0
    assert g.tolist() == [7.0, 0.0]
    np.testing.assert_array_equal(f.hessian(np.array([2.0, 5.0])), [[2.0, 0.0], [0.0, 0.0]])


def test_no_warning_when_every_parameter_appears():
    x1, x2 = sg.params("x1 x2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sg.compile(x1 * x2, params=[x1, x2])


# -- the call ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["value", "grad", "value_and_grad", "hessian", "hvp"])
@pytest.mark.parametrize("x", [[1.0], [1.0, 2.0, 3.0]], ids=["short", "long"])
def test_x_of_the_wrong_length_names_the_count(rosen, method, x):
    args = (np.asarray(x), np.ones(2)) if method == "hvp" else (np.asarray(x),)
    with pytest.raises(ValueError, match=r"2 entries \(x1, x2\)"):
        getattr(rosen, method)(*args)
    with pytest.raises(ValueError, match=r"2 entries"):  # a list goes the same way
        getattr(rosen, method)(*(list(a) for a in args))


def test_v_of_the_wrong_length(rosen):
    with pytest.raises(ValueError, match=r"v must have 2 entries"):
        rosen.hvp(np.ones(2), np.ones(3))


@pytest.mark.parametrize("method", ["grad", "value_and_grad", "hessian"])
def test_out_of_the_wrong_shape(rosen, method):
    bad = np.empty(3) if method != "hessian" else np.empty((2, 3))
    with pytest.raises(ValueError, match="out"):
        getattr(rosen, method)(np.ones(2), out=bad)


@pytest.mark.parametrize("x", [["a", "b"], np.array(["a", "b"]), [1 + 1j, 2.0], "ab"],
                         ids=["list-of-str", "str-array", "complex", "str"])
@pytest.mark.parametrize("method", ["value", "value_and_grad", "hessian"])
def test_x_of_the_wrong_dtype_is_a_type_error(rosen, method, x):
    with pytest.raises(TypeError, match="x must be a 1-D array"):
        getattr(rosen, method)(x)


def test_numeric_strings_are_rejected(rosen):
    with pytest.raises(TypeError):
        rosen.value(np.array(["-1.0", "2.0"]))


def test_none_is_a_type_error():
    f = sg.compile(sg.params("x1") ** 2)
    with pytest.raises(TypeError, match="x must be"):
        f.value(None)


def test_two_dimensional_x_is_a_value_error_on_every_method(rosen):
    x = np.zeros((2, 1))
    for method in ("value", "grad", "value_and_grad", "hessian"):
        try:
            getattr(rosen, method)(x)
        except ValueError as exc:
            assert "1-D" in str(exc)
        except Exception as exc:
            raise AssertionError(f"{method}: {type(exc).__name__} instead of ValueError") from exc
        else:
            raise AssertionError(f"{method} accepted x of shape (2, 1)")


def test_integer_x_is_converted(rosen):
    assert rosen.value(np.array([-1, 2])) == 104.0
    assert rosen.value_and_grad([-1, 2])[1].tolist() == [396.0, 200.0]


# -- identifiers cannot inject code ------------------------------------------------------------

def _code_names(source: str) -> set[str]:
    """Every NAME token of the source, with comments and string literals dropped."""
    toks = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.string for t in toks if t.type == tokenize.NAME}


PAYLOAD = "__import__('os').system('echo pwned')"


def test_symbol_names_are_sanitised():
    x1 = sg.params("x1")
    evil = sp.Symbol(PAYLOAD, real=True)
    f = sg.compile(x1**2 + 3 * evil**2 + x1 * evil, params=[x1, evil])
    names = _code_names(f.source)
    assert "__import__" not in names and "system" not in names
    assert PAYLOAD not in "\n".join(ln for ln in f.source.splitlines()
                                     if not ln.lstrip().startswith("#") and "PARAMS" not in ln
                                     and '"' not in ln)
    assert f.params == ("x1", PAYLOAD)
    x = np.array([1.0, 2.0])
    val, g = f.value_and_grad(x)
    assert (val, g.tolist()) == (1.0 + 12.0 + 2.0, [2.0 + 2.0, 12.0 + 1.0])


@pytest.mark.parametrize("n_before", [1, 8], ids=["listed-in-checks", "header-only"])
def test_newline_in_a_symbol_name_cannot_escape_the_header(n_before, tmp_path):
    xs = sg.params([f"nl{k}" for k in range(n_before)])
    xs = xs if isinstance(xs, tuple) else (xs,)
    marker = tmp_path / "pwned"
    evil = sp.Symbol(f"z\nopen({str(marker)!r}, 'w').write('x')\n#", real=True)
    f = sg.compile(sum(x**2 for x in xs) + evil**2, params=[*xs, evil])
    assert not marker.exists(), "a parameter name ran as code"
    assert "open" not in _code_names(f.source)
    assert f.value(np.ones(n_before + 1)) == n_before + 1.0


# -- the fast path of parameter-only losses takes every argument the checked path takes --------

def test_fast_path_is_installed(rosen):
    """Parameter-only kernels answer value_and_grad/value through a type-exact dispatcher; if a
    Numba release changed the internals it relies on, this fails instead of a silent slowdown."""
    assert rosen.value_and_grad is not sg.Kernel.value_and_grad.__get__(rosen)
    assert rosen.value_and_grad.__qualname__ == "ScalarKernel.value_and_grad"
    assert rosen._exact_value is not None


def _x_variants():
    base = np.array([-1.0, 2.0])
    ro = base.copy()
    ro.flags.writeable = False
    return {
        "array": base, "list": [-1.0, 2.0], "int": np.array([-1, 2]), "tuple": (-1, 2.0),
        "float32": base.astype(np.float32), "strided": np.array([-1.0, 0.0, 2.0])[::2],
        "read-only": ro, "fortran-column": np.asfortranarray(np.array([[-1.0], [2.0]]))[:, 0],
    }


@pytest.mark.parametrize("name", list(_x_variants()))
def test_fast_path_accepts_every_x_the_api_accepts(rosen, name):
    x = _x_variants()[name]
    g = np.full(2, np.nan)
    v, out = rosen.value_and_grad(x, out=g)
    assert out is g and v == 104.0 and g.tolist() == [396.0, 200.0]
    v, out = rosen.value_and_grad(x)
    assert v == 104.0 and out.tolist() == [396.0, 200.0]
    assert rosen.value(x) == 104.0 and rosen.grad(x).tolist() == [396.0, 200.0]
    assert isinstance(rosen.value(x), float) and isinstance(v, float)


@pytest.mark.parametrize("out", [np.empty(2, np.float32), np.empty((2, 1)), [0.0, 0.0]],
                         ids=["float32", "2-D", "list"])
def test_fast_path_rejects_an_out_it_cannot_write(rosen, out):
    with pytest.raises(ValueError, match="out must be a float64 array of shape"):
        rosen.value_and_grad(np.array([-1.0, 2.0]), out=out)


def test_a_strided_out_is_written_through_the_view(rosen):
    buf = np.zeros(4)
    rosen.value_and_grad(np.array([-1.0, 2.0]), out=buf[::2])
    assert buf.tolist() == [396.0, 0.0, 200.0, 0.0]


def test_read_only_out_is_refused_not_written(rosen):
    out = np.zeros(2)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        rosen.value_and_grad(np.array([-1.0, 2.0]), out=out)
    assert out.tolist() == [0.0, 0.0]


def test_fast_path_rejects_data_and_batch_by_name(rosen):
    with pytest.raises(TypeError, match="unexpected keyword argument 't'"):
        rosen.value_and_grad(np.array([-1.0, 2.0]), t=np.ones(3))
    with pytest.raises(TypeError, match="takes no data, got t"):
        rosen.grad(np.array([-1.0, 2.0]), t=np.ones(3))
