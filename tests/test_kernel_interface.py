"""One interface, one set of checks, for every kernel kind (scalar, array, residual), unbound and
bound (issue 24, items 5, 6, 22, 23, 24 and the new user's data mistakes).

Each kind fits the same line ``a*t + b`` to the same data; ``call`` evaluates the kind's
vector result into ``out`` (the gradient, or the residuals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import symgrad as sg

T = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
Y = 2.0 * T + 1.0 + np.array([0.1, -0.2, 0.0, 0.3, -0.1, 0.05])
X0 = np.array([1.5, 0.5])


@dataclass
class Kind:
    name: str
    kernel: Any
    columns: Any  # (t, y) -> the data keywords

    def data(self, t=T, y=Y) -> dict:
        return self.columns(t.copy(), y.copy())

    def out_shape(self) -> tuple:
        return (T.size,) if self.residual else (2,)

    @property
    def residual(self) -> bool:
        return self.name.endswith("residual")

    def call(self, bound: bool, x, out=None, data=None):
        """The kind's vector result at ``x`` (into ``out``), bound or not, on ``data``."""
        data = self.data() if data is None else data
        f = self.kernel.bind(**data) if bound else self.kernel
        kw = {} if bound else data
        if self.residual:
            return f.residuals(x, out, **kw)
        return f.value_and_grad(x, out, **kw)[1]

    def reference(self) -> np.ndarray:
        return self.call(False, X0.copy())


@pytest.fixture(scope="module")
def kinds() -> dict[str, Kind]:
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    w = sg.params("w", shape=(2,))
    X, ya = sg.data("X", shape=(2,)), sg.data("y")
    return {
        "scalar": Kind("scalar", sg.compile(sg.mean((a * t + b - y) ** 2)),
                       lambda t, y: {"t": t, "y": y}),
        "array": Kind("array", sg.compile(sg.mean((X @ w - ya) ** 2), fuse=False),
                      lambda t, y: {"X": np.column_stack([t, np.ones_like(t)]), "y": y}),
        "fused array": Kind("fused array", sg.compile(sg.mean((X @ w - ya) ** 2)),
                            lambda t, y: {"X": np.column_stack([t, np.ones_like(t)]), "y": y}),
        "residual": Kind("residual", sg.compile_residuals(a * t + b - y),
                         lambda t, y: {"t": t, "y": y}),
        "array residual": Kind("array residual", sg.lsq.as_kernel(X @ w - ya),
                               lambda t, y: {"X": np.column_stack([t, np.ones_like(t)]),
                                             "y": y}),
    }


KINDS = ["scalar", "array", "fused array", "residual", "array residual"]
BOUND = pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])


@pytest.fixture(params=KINDS)
def kind(request, kinds) -> Kind:
    return kinds[request.param]


@BOUND
def test_out_aliasing_x_is_refused_and_x_is_kept(kind, bound):
    ref = kind.reference()
    x = np.zeros(max(2, T.size))
    x[:2] = X0
    xv = x[:2]
    with pytest.raises(ValueError, match="overlaps x"):
        kind.call(bound, xv, x[:kind.out_shape()[0]])
    assert x[:2].tolist() == X0.tolist() and not x[2:].any()
    np.testing.assert_array_equal(kind.call(bound, X0.copy()), ref)


@BOUND
@pytest.mark.parametrize("shape", ["column", "short", "float32", "list"])
def test_out_of_the_wrong_shape_or_type_is_refused(kind, bound, shape):
    n = kind.out_shape()[0]
    out = {"column": np.zeros((n, 1)), "short": np.zeros(n - 1),
           "float32": np.zeros(n, np.float32), "list": [0.0] * n}[shape]
    with pytest.raises(ValueError, match=r"out must be a .*float64 array of shape"):
        kind.call(bound, X0.copy(), out)


@BOUND
def test_a_strided_out_is_refused_or_written_through(kind, bound):
    n = kind.out_shape()[0]
    buf = np.zeros(2 * n)
    if kind.name in ("scalar", "fused array"):  # the compiled sample loop takes any layout
        got = kind.call(bound, X0.copy(), buf[::2])
        np.testing.assert_array_equal(buf[::2], kind.reference())
        assert got.base is buf and not buf[1::2].any()
    else:  # BLAS and the fused passes need C order
        with pytest.raises(ValueError, match=r"out must be a C-contiguous float64 array"):
            kind.call(bound, X0.copy(), buf[::2])
        assert not buf.any()


@BOUND
@pytest.mark.parametrize("column", ["first", "last"])
def test_out_overlapping_a_data_column_is_refused(kind, bound, column):
    n = kind.out_shape()[0]
    data = kind.data()
    name = list(data)[0 if column == "first" else -1]
    col = data[name]
    before = col.copy()
    with pytest.raises(ValueError, match=rf"out overlaps data (column|array) '{name}'"):
        kind.call(bound, X0.copy(), col.reshape(-1)[:n], data)
    np.testing.assert_array_equal(col, before)  # the caller's data are not written


@pytest.mark.parametrize("name", ["scalar", "array", "fused array"])
@BOUND
def test_hessian_and_hvp_out_overlapping_data_are_refused(kinds, name, bound):
    k = kinds[name]
    t = np.arange(4.0)
    data = k.columns(t, 2.0 * t)
    f = k.kernel.bind(**data) if bound else k.kernel
    kw = {} if bound else data
    for col in data.values():
        before = col.copy()
        with pytest.raises(ValueError, match="overlaps data"):
            f.hessian(X0.copy(), col.reshape(-1)[:4].reshape(2, 2), **kw)
        with pytest.raises(ValueError, match="overlaps data"):
            f.hvp(X0.copy(), np.ones(2), col.reshape(-1)[:2], **kw)
        np.testing.assert_array_equal(col, before)
    with pytest.raises(ValueError, match="overlaps v"):
        v = np.ones(2)
        f.hvp(X0.copy(), v, v, **kw)


@BOUND
def test_a_non_finite_datum_is_named_with_its_row(kind, bound):
    data = kind.data()
    y = data["y"]
    if bound:  # data are bound without a copy: a NaN put in afterwards is still named
        f = kind.kernel.bind(**data)
        y[3] = np.nan
        call = (lambda: f.residuals(X0.copy())) if kind.residual else \
            (lambda: f.value_and_grad(X0.copy()))
    else:
        y[3] = np.nan
        call = lambda: kind.call(False, X0.copy(), data=data)  # noqa: E731
    with pytest.raises(ValueError, match=r"data (column|array) 'y' has a non-finite value "
                                         r"\(nan\) at row 3"):
        call()


@BOUND
@pytest.mark.parametrize("x", [X0 + 1j, np.array(["1", "2"]), ["1.0", "2.0"], "12", None],
                         ids=["complex", "str-array", "str-list", "str", "None"])
def test_complex_or_string_x_is_a_type_error(kind, bound, x):
    with pytest.raises(TypeError, match="x must be a 1-D array of floats"):
        kind.call(bound, x)


@BOUND
def test_integer_x_is_converted(kind, bound):
    ref = kind.call(bound, np.array([2.0, 1.0]))
    np.testing.assert_array_equal(kind.call(bound, np.array([2, 1])), ref)
    np.testing.assert_array_equal(kind.call(bound, [2, 1]), ref)


def test_data_passed_by_position_is_a_clear_type_error(kind):
    data = kind.data()
    names = list(data)
    method = "residuals" if kind.residual else "value_and_grad"
    want = rf"data are keyword arguments, by column name \({names[0]}=\.\.\., {names[1]}=\.\.\.\)"
    with pytest.raises(TypeError, match=want):
        getattr(kind.kernel, method)(X0.copy(), None, *data.values())
    if not kind.residual:
        with pytest.raises(TypeError, match=want):
            kind.kernel.value(X0.copy(), *data.values())
    # a dict by position lands in ``out``: said so, not "missing data column"
    for call in (lambda: getattr(kind.kernel, method)(X0.copy(), data),
                 lambda: kind.kernel.value(X0.copy(), data) if not kind.residual else
                 kind.kernel.normal(X0.copy(), data)):
        with pytest.raises(TypeError, match=want + r"; unpack it as f\.\w+\(x, \*\*data\)"):
            call()


def test_a_misspelt_column_is_named_in_the_error(kind):
    data = kind.data()
    data["yy"] = data.pop("y")
    what = "array" if kind.name.startswith(("array", "fused array")) else "column"
    with pytest.raises(TypeError, match=rf"missing data {what} 'y': .*; got 'yy', which it does "
                                        r"not use: a misspelling\?"):
        kind.call(False, X0.copy(), data=data)
    data["zz"] = data.pop("yy")  # nothing like it: the names passed are listed
    with pytest.raises(TypeError, match=rf"missing data {what} 'y': .*; got 'zz', which it"):
        kind.call(False, X0.copy(), data=data)


# ------------------------------------------------------------- gathers: the row in the data


@pytest.fixture(scope="module")
def gather():
    U = sg.params("U", shape=(3, 2))
    i = sg.data("i", dtype=int)
    r = sg.data("r")
    return sg.compile(sg.mean((sg.sum(U[i], axis=0) - r) ** 2))


def _gather_data(i):
    return {"i": i, "r": np.arange(float(len(i)))}


@pytest.mark.parametrize("batch", [np.array([3, 0]), slice(2, 5),
                                   np.array([False] * 3 + [True] * 2)],
                         ids=["index", "slice", "mask"])
def test_an_index_out_of_range_in_a_batch_is_named_at_its_data_row(gather, batch):
    d = _gather_data(np.array([0, 1, 2, 7, 1]))
    x = np.zeros(gather.n_params)
    with pytest.raises(ValueError, match=r"index column 'i' has 7 in row 3: U has rows 0\.\.2"):
        gather.value(x, batch=batch, **d)
    # a batch that does not read row 3 is fine: U = 0, so the loss is the mean of r**2
    assert gather.value(x, batch=np.array([0, 4]), **d) == (0.0 + 16.0) / 2


def test_an_index_out_of_range_in_a_minibatch_is_named_at_its_data_row(gather):
    d = _gather_data(np.array([0, 1, 2, 7, 1, 0]))
    with pytest.raises(ValueError, match=r"index column 'i' has 7 in row 3"):
        sg.minimize(gather, np.zeros(gather.n_params), data=d, batch_size=2, steps=3)


def test_a_uint64_index_is_reported_as_given(gather):
    i = np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"index column 'i' has 18446744073709551615 in row 3"):
        gather.value(np.zeros(gather.n_params), **_gather_data(i))
    ok = np.array([0, 1, 2, 1], dtype=np.uint64)
    assert gather.value(np.zeros(gather.n_params), **_gather_data(ok)) == pytest.approx(3.5)


def test_an_index_changed_after_binding_is_named(gather):
    d = _gather_data(np.array([0, 1, 2, 1]))
    fb = gather.bind(**d)
    d["i"][2] = -4
    with pytest.raises(ValueError, match=r"index column 'i' has -4 in row 2"):
        fb.value(np.zeros(gather.n_params))


def test_an_extra_positional_argument_to_a_loss_without_data():
    f = sg.compile((sg.params("q_extra") - 1) ** 2)
    for call in (lambda: f.value(np.ones(1), np.ones(3)),
                 lambda: f.value_and_grad(np.ones(1), None, np.ones(3)),
                 lambda: f.hessian(np.ones(1), None, np.ones(3))):
        with pytest.raises(TypeError, match=r"1 extra positional argument.*takes no data"):
            call()


def test_a_kernel_bound_to_dask_columns_refuses_out_aliasing_x_or_v(kinds):
    da = pytest.importorskip("dask.array")
    fb = kinds["scalar"].kernel.bind(t=da.from_array(T, chunks=4), y=da.from_array(Y, chunks=4))
    x, v = X0.copy(), np.ones(2)
    with pytest.raises(ValueError, match="out overlaps x"):
        fb.value_and_grad(x, out=x)
    with pytest.raises(ValueError, match="out overlaps v"):
        fb.hvp(x, v, out=v)
    buf = np.zeros(6)
    buf[:2] = X0
    with pytest.raises(ValueError, match="overlaps x"):
        fb.hessian(buf[:2], out=buf[:4].reshape(2, 2))
    assert buf[:2].tolist() == X0.tolist()
    assert x.tolist() == X0.tolist() and v.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(fb.grad(x), kinds["scalar"].reference(), rtol=1e-12)
