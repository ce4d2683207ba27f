"""Every build entry point takes the same options (issue 21 item 12), refused with why where a
kind cannot honour one, and every kind's cache key comes from one function that sees them all."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.backend.numba import CodegenOptions
from symgrad.build import key as cachekey
from symgrad.build import options as buildopts
from symgrad.ir.problem import ProblemError

a, b = sg.params("a b")
t, y = sg.data("t y")
W = sg.params("W", shape=(3,))
XA = sg.data("XA", shape=(3,))

SCALAR = sg.mean((a * t + b - y) ** 2)
ARRAY = sg.mean((XA @ W) ** 2)
MODEL = XA @ W
RESID = a * sg.exp(-b * t) - y
_V, _I = sg.params("V", indexed=True), sg.index("i")
VSUM = sg.sum((_V[_I] - 1) ** 2, (_I, 0, _V.length - 1))


# ---------------------------------------------------------------- one entry point, every kind

def test_compile_with_kind_residual_is_compile_residuals():
    rk = sg.compile(RESID, kind="residual")
    assert rk.kind == "residual"
    assert rk.path == sg.compile_residuals(RESID).path
    assert sg.compile([a - 1, b - 2], kind="residuals").m == 2  # the function's own spelling


def test_kind_is_detected_for_losses_and_models():
    assert [sg.compile(e, **kw).kind for e, kw in ((SCALAR, {}), (ARRAY, {"fuse": False}),
                                                   (MODEL, {}))] == ["scalar", "array", "model"]
    fused = sg.compile(ARRAY)  # a small array loss runs as one pass over the samples: the
    assert fused.kind == "scalar"  # the scalar path's module, the array loss's face:
    assert fused.params == sg.compile(ARRAY, fuse=False).params
    assert sg.compile(SCALAR, kind="scalar").kind == "scalar"


def test_data_keyword_reaches_residuals_through_compile():
    k, u, v = sp.symbols("k u v")
    rk = sg.compile(k * u - v, [k], kind="residual", data="u v", parallel=False,
                    dtype="float64")
    assert rk.data_names == ("u", "v")
    assert rk.residuals([2.0], u=np.array([1.0, 2.0]), v=np.array([2.0, 5.0])).tolist() == \
        [0.0, -1.0]


def test_residual_kernel_takes_outputs_like_a_loss():
    # params= fixes x's order: the default follows the last declaration of a name anywhere in
    # the process, and other test modules declare "a" and "b" again
    rk = sg.compile(RESID, [a, b], kind="residual", outputs={"curve": a * sg.exp(-b * t)})
    assert rk.params == ("a", "b")
    got = rk.outputs["curve"]([2.0, 0.0], t=np.array([0.0, 1.0]))
    assert got.tolist() == [2.0, 2.0]


def test_the_options_that_apply_are_accepted_in_every_spelling():
    assert sg.compile(ARRAY, dtype=np.float32).source == sg.compile(ARRAY, dtype="float32").source
    assert "DTYPE = 'float32'" in sg.compile(MODEL, dtype="f4").source
    assert sg.compile(SCALAR, dtype="float64", parallel=np.bool_(True)).parallel is True
    pol = sg.KinkPolicy(relu=1.0)
    assert sg.compile_residuals(RESID, policy=pol, parallel=True, dtype="float64").kind == \
        "residual"


# ---------------------------------------------------------------- refusals, each with why

REFUSED = [
    # (loss, kind, options, error, what the message must say)
    # float32 is a data loss's per-sample arithmetic: losses without one refuse it, with why
    ((a - 1) ** 2 + b ** 2, None, {"dtype": "float32"}, ValueError,
     r"float32.*no sum over data samples.*sg.mean"),
    (VSUM, None, {"dtype": "float32"}, ValueError, r"float32.*no sum over data samples"),
    ([a - 1, b], "residual", {"dtype": "float32"}, ValueError,
     r"float32.*parameter-only residuals.*data columns"),
    (RESID, "residual", {"dtype": "float16"}, ValueError, r"'float64' or 'float32'"),
    (MODEL, None, {"parallel": True}, ValueError, r"not available for a model"),
    (ARRAY, None, {"dtype": "float16"}, ValueError, r"'float64' or 'float32', got 'float16'"),
    (ARRAY, None, {"dtype": "no-such-type"}, ValueError, r"'float64' or 'float32'"),
    (SCALAR, None, {"parallel": "yes"}, TypeError, r"parallel must be None, True or False"),
    (SCALAR, None, {"policy": {"relu": 1}}, TypeError, r"policy must be a sg.KinkPolicy"),
    (SCALAR, None, {"data": "t"}, ProblemError, r"data= names plain symbols.*kind='residual'"),
    (ARRAY, None, {"data": "t"}, ProblemError, r"data= .*sg.data"),
    ([a - 1, b], None, {}, ProblemError, r"not a list or Matrix.*kind='residual'"),
    (sp.Matrix([a - 1, b]), None, {}, ProblemError, r"kind='residual'"),
    (SCALAR, "array", {}, ProblemError, r"kind='array', but this is a scalar loss"),
    (MODEL, "scalar", {}, ProblemError, r"this is a model \(kind 'model'\)"),
    (SCALAR, "vector", {}, ValueError, r"kind must be one of 'scalar', 'array', 'model', "),
]


@pytest.mark.parametrize("loss, kind, opts, err, match", REFUSED,
                         ids=[f"{i}-{r[3].__name__}" for i, r in enumerate(REFUSED)])
def test_an_option_a_kind_cannot_honour_is_refused_with_why(loss, kind, opts, err, match,
                                                            tmp_path):
    with pytest.raises(err, match=match):
        sg.compile(loss, kind=kind, **opts)
    if "parallel" not in opts:  # generate takes the same options and refuses the same way
        with pytest.raises(err, match=match):
            sg.generate(loss, tmp_path / "m.py", kind=kind, **opts)
        assert not (tmp_path / "m.py").exists()


def test_compile_residuals_refuses_what_compile_refuses():
    with pytest.raises(ValueError, match="parameter-only residuals"):
        sg.compile_residuals([a - 1, b], dtype="float32")
    with pytest.raises(TypeError, match="parallel must be None, True or False"):
        sg.compile_residuals(RESID, parallel="no")


@pytest.mark.parametrize("loss, kind", [(SCALAR, None), (ARRAY, None), (RESID, "residual")])
def test_generate_refuses_parallel_which_a_module_does_not_record(loss, kind, tmp_path):
    with pytest.raises(ValueError, match=r"chosen when a kernel runs.*value_parallel"):
        sg.generate(loss, tmp_path / "m.py", kind=kind, parallel=True)
    assert not (tmp_path / "m.py").exists()


def test_every_kind_is_in_the_option_table():
    assert set(buildopts.DTYPES) == set(buildopts.PARALLEL) == set(buildopts.KINDS) \
        == set(cachekey.PREFIX)
    for kind in buildopts.KINDS:
        assert buildopts.DTYPES[kind][0] == "float64" and None in buildopts.PARALLEL[kind]


# ---------------------------------------------------------------- one cache key (item 3)

def test_every_part_of_the_key_changes_it():
    base = dict(kind="scalar", problem="p", policy=sg.KinkPolicy(), opts=CodegenOptions(),
                dtype="float64", writers=("backend.numba",))
    key = cachekey.cache_key(**base)
    assert key == cachekey.cache_key(**base)
    changed = dict(kind="residual", problem="q", policy=sg.KinkPolicy(tie=0.25),
                   opts=CodegenOptions(fastmath=("contract",)), dtype="float32",
                   writers=("backend.numba.residual_module",))
    for name, value in changed.items():
        assert cachekey.cache_key(**{**base, name: value}) != key, name


@pytest.fixture
def builds(monkeypatch, cdir):
    """Count the module texts built (a cache miss builds one; a hit none), in a fresh cache."""
    import symgrad.build.array_cache as acompiled
    import symgrad.build.model as amodel
    import symgrad.build.residual_kernel as lbuild
    import symgrad.build.scalar_cache as scache

    count = {"n": 0}

    def counting(fn):
        def wrapped(*args, **kw):
            count["n"] += 1
            return fn(*args, **kw)
        return wrapped

    monkeypatch.setattr(scache, "module_source", counting(scache.module_source))
    monkeypatch.setattr(lbuild, "residual_source", counting(lbuild.residual_source))
    monkeypatch.setattr(acompiled, "array_module_source", counting(acompiled.array_module_source))
    monkeypatch.setattr(amodel, "model_module_source", counting(amodel.model_module_source))
    return count


CASES = [  # (loss, kind, option that changes the module text)
    (SCALAR, None, {"policy": sg.KinkPolicy(abs=1.0)}),
    (SCALAR, None, {"dtype": "float32"}),
    (ARRAY, None, {"policy": sg.KinkPolicy(relu=1.0)}),
    (ARRAY, None, {"dtype": "float32"}),
    (MODEL, None, {"dtype": "float32"}),
    (RESID, "residual", {"policy": sg.KinkPolicy(tie=0.25)}),
]


@pytest.mark.parametrize("loss, kind, opt", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_same_problem_hits_the_cache_and_each_option_changes_the_key(loss, kind, opt, builds):
    f = sg.compile(loss, kind=kind)
    assert builds["n"] == 1
    assert sg.compile(loss, kind=kind).path == f.path and builds["n"] == 1  # a hit
    g = sg.compile(loss, kind=kind, **opt)
    assert g.path != f.path and builds["n"] == 2  # another module, another key
    assert f.path.name.startswith(f"sg_{cachekey.PREFIX[f.kind]}")


def test_parallel_chooses_functions_of_one_module_so_it_shares_the_key(builds):
    f = sg.compile(SCALAR)
    for parallel in (True, False):
        assert sg.compile(SCALAR, parallel=parallel).path == f.path
    for parallel in (True, False):  # residual modules hold serial and *_parallel functions
        assert sg.compile(RESID, kind="residual", parallel=parallel).path == \
            sg.compile(RESID, kind="residual").path
    assert builds["n"] == 2


def test_the_kind_is_in_the_key():
    # one problem text, two kinds: never the same entry
    args = ("p", sg.KinkPolicy(), CodegenOptions(), "float64", ("backend.numba",))
    keys = {cachekey.cache_key(k, *args) for k in buildopts.KINDS}
    assert len(keys) == len(buildopts.KINDS)
