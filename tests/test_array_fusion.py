"""Sibling loop fusion (symgrad.passes.siblings): the grid energy's value and gradient are one
loop nest, whose guarded members give NumPy's numbers on every grid shape (1 x n, n x 1 and
2 x 2 exercise the guards), in the serial and the threaded cores (the same bits with 1 and 2
threads); nests that depend on one another are not fused.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.emit_par import PAR_WORK
from symgrad.ir.dims import Dim
from symgrad.passes.siblings import Nest, schedule

TOL = 1e-12


def _grid(shape):
    u = sg.params("u", shape=shape)
    return sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2)


@pytest.fixture(scope="module")
def grid():
    """One module for every size (the sizes are the dims argument)."""
    return sg.compile(_grid((6, 5)), parallel=True, fuse=False)


def _ref(U):
    """NumPy's value and gradient of the grid energy."""
    G = np.zeros_like(U)
    for d, lo, hi in ((U[1:] - U[:-1], np.s_[1:], np.s_[:-1]),
                      (U[:, 1:] - U[:, :-1], np.s_[:, 1:], np.s_[:, :-1])):
        G[lo] += 2 * d
        G[hi] -= 2 * d
    return ((U[1:] - U[:-1]) ** 2).sum() + ((U[:, 1:] - U[:, :-1]) ** 2).sum(), G.ravel()


def _body(src: str, name: str) -> list[str]:
    start = src.index(f"def {name}(")
    return src[start:src.index("\n\n\n", start)].splitlines()


def test_grid_is_one_loop_nest(grid):
    """The value and the gradient read u in one pass (three nests before fusion)."""
    src = grid.source
    for name in ("_value", "_value_and_grad"):
        body = _body(src, name)
        assert sum(ln.startswith("    for ") for ln in body) == 1, name
        assert any(ln.strip() == "if i0 < D0 - 1:" for ln in body)
        assert any(ln.strip() == "if i1 < D1 - 1:" for ln in body)
    # the threaded core: one parallel region over chunks of the rows
    assert sum("numba.prange" in ln for ln in _body(src, "_value_and_grad_par")) == 1


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (2, 2), (1, 1), (2, 1), (5, 8), (9, 3)])
def test_fused_grid_matches_numpy(grid, shape):
    U = np.random.default_rng(sum(shape)).standard_normal(shape)
    x = U.ravel().copy()
    dims = np.array(shape, dtype=np.int64)
    ref, G = _ref(U)
    g = np.full_like(x, np.nan)
    val = grid.module._value_and_grad(x, g, dims)
    assert abs(val - ref) <= TOL * max(ref, 1.0)
    np.testing.assert_allclose(g, G, rtol=TOL, atol=TOL)
    assert abs(grid.module._value(x, dims) - ref) <= TOL * max(ref, 1.0)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has a single thread")
@pytest.mark.parametrize("shape", [(1, 40_000), (40_000, 1), (181, 203)])
def test_fused_threaded_grid_matches_numpy(grid, shape):
    """The threaded core (chunks of the fused rows) on edge shapes: NumPy's numbers, the same
    bits with 1 and 2 threads."""
    assert shape[0] * shape[1] > PAR_WORK
    U = np.random.default_rng(shape[0]).standard_normal(shape)
    x = U.ravel().copy()
    dims = np.array(shape, dtype=np.int64)
    ref, G = _ref(U)
    out = []
    before = numba.get_num_threads()
    try:
        for nt in (1, 2):
            numba.set_num_threads(nt)
            g = np.full_like(x, np.nan)
            out.append((grid.module._value_and_grad_par(x, g, dims), g,
                        grid.module._value_par(x, dims)))
    finally:
        numba.set_num_threads(before)
    (v1, g1, w1), (v2, g2, w2) = out
    assert v1 == v2 and w1 == w2 and np.array_equal(g1, g2)
    assert abs(v1 - ref) <= TOL * ref and abs(w1 - ref) <= TOL * ref
    np.testing.assert_allclose(g1, G, rtol=TOL, atol=TOL)


def test_dependent_nests_are_not_fused():
    """``w = u**3`` is stored once (it is read twice); the sums read it, so they wait for its
    nest (they fuse with each other), and the numbers are NumPy's."""
    u = sg.params("u", shape=(6, 5))
    w = u**3
    f = sg.compile(sg.sum(w[1:, :] * w[:-1, :]) + sg.sum(sg.exp(w[:, 1:] - w[:, :-1])),
                   fuse=False)
    body = _body(f.source, "_value")
    loops = [k for k, ln in enumerate(body) if ln.startswith("    for ")]
    assert len(loops) == 2  # the store of w, then the two sums together
    assert any("if i0 < D0 - 1:" in ln for ln in body[loops[1]:])
    U = np.random.default_rng(3).standard_normal((6, 5))
    W = U**3
    ref = (W[1:] * W[:-1]).sum() + np.exp(W[:, 1:] - W[:, :-1]).sum()
    e = np.exp(W[:, 1:] - W[:, :-1])
    dW = np.zeros_like(W)
    dW[1:] += W[:-1]
    dW[:-1] += W[1:]
    dW[:, 1:] += e
    dW[:, :-1] -= e
    val, g = f.value_and_grad(U.ravel())
    assert abs(val - ref) <= TOL * abs(ref)
    np.testing.assert_allclose(g, (3 * U**2 * dW).ravel(), rtol=TOL, atol=TOL)


# -- the pass itself ---------------------------------------------------------------------------
D0, D1 = Dim(6, "u", 0), Dim(5, "u", 1)
TOP = Dim.part(D0, 1, 0)


def _kinds(out):
    return [len(x) if isinstance(x, list) else x for x in out]


def test_a_nest_reading_another_waits_for_it():
    a = Nest((D0, D1), ["t1[i0, i1] = u[i0, i1]**2"])
    b = Nest((TOP, D1), [], total=("t2", "t1[i0 + 1, i1] - t1[i0, i1]"))
    c = Nest((D0, D1), [], total=("t3", "u[i0, i1]"))
    out = schedule([a, b, c, "t4 = t2 + t3"])
    assert [[m for m in x] if isinstance(x, list) else x for x in out] == [[a, c], [b],
                                                                            "t4 = t2 + t3"]


def test_no_fusion_across_a_chain_of_dependences():
    """b reads what a statement computes from a's result: fusing b into a would need b before
    and after that statement."""
    a = Nest((D0, D1), [], total=("s1", "u[i0, i1]"))
    b = Nest((D0, D1), ["t2[i0, i1] = s2*u[i0, i1]"])
    assert _kinds(schedule([a, "s2 = 2.0*s1", b])) == [1, "s2 = 2.0*s1", 1]


def test_calls_and_other_ranks_are_barriers_for_what_they_touch():
    a = Nest((D0, D1), ["t1[i0, i1] = u[i0, i1]"])
    b = Nest((D0, D1), ["t3[i0, i1] = t2[i0, i1]"])
    c = Nest((D0,), ["t4[i0] = u[i0, 0]"])
    out = schedule([a, "_gemm(t1, u, t2)", b, c])
    assert _kinds(out) == [1, "_gemm(t1, u, t2)", 1, 1]
    # a nest that touches nothing of the call moves above it, into the first nest
    d = Nest((D0, D1), ["t5[i0, i1] = 2.0*v[i0, i1]"])
    assert _kinds(schedule([a, "_gemm(t1, u, t2)", d])) == [2, "_gemm(t1, u, t2)"]


def test_cycles_through_two_groups_are_refused():
    """a, x and c fuse; d may not join b: b -> x (in a's group, with c) -> d would put d both
    before and after that group."""
    a = Nest((D0, D1), ["t1[i0, i1] = u[i0, i1]"])
    b = Nest((D0,), ["t2[i0] = u[i0, 0]"])
    x = Nest((D0, D1), ["t3[i0, i1] = t2[i0]"])
    c = Nest((D0, D1), ["t4[i0, i1] = u[i0, i1]"])
    d = Nest((D0,), ["t5[i0] = t4[i0, 0]"])
    out = schedule([a, b, x, c, d])
    assert out == [[b], [a, x, c], [d]]


@pytest.mark.slow  # -m slow (5 s of compile, cold)
def test_a_nest_does_not_land_inside_a_contractions_accumulation():
    """A scalar contraction's loop shares the accumulator ``acc`` with a sum's nest across three
    statements; the nest (fused with the gradient of u) was printed between ``acc = 0.0`` and
    the contraction's loop, which then added to the sum of u**2 (value_and_grad's value was
    13.47 where value gave 13.44)."""
    u = sg.params("u", shape=(2,))
    w = sg.params("w", shape=(3,))
    W = sg.params("W", shape=(3, 2))
    X = sg.data("X", shape=(2,))
    inner = sg.sum(sg.einsum("i,l->il", sg.sum(W, axis=1), w), axis=0) / 3
    f = sg.compile(sg.einsum("k,k->", w, inner) + W[0, 1]
                   + 0.5 * sg.sum(sg.einsum("ij,j->i", W, X) ** 2) + 0.1 * sg.sum(u**2),
                   fuse=False)
    rng = np.random.default_rng(0)
    x, Xv = rng.standard_normal(f.n_params), rng.standard_normal((5, 2))

    def ref(z):
        uu, ww, WW = z[:2], z[2:5], z[5:].reshape(3, 2)
        return (ww @ (WW.sum(1).sum() * ww / 3) + WW[0, 1] + 0.5 * ((Xv @ WW.T) ** 2).sum()
                + 0.1 * (uu**2).sum())

    val, g = f.value_and_grad(x, X=Xv)
    assert abs(val - ref(x)) <= TOL * abs(ref(x))
    assert abs(f.value(x, X=Xv) - ref(x)) <= TOL * abs(ref(x))
    cg = np.array([ref(x + 1e-30j * e).imag / 1e-30 for e in np.eye(x.size)])
    np.testing.assert_allclose(g, cg, rtol=TOL, atol=TOL)


def test_raw_accumulator_statements_keep_their_nests_out():
    a = Nest((D0,), [], total=("t3", "u[i0]**2"), extra={"acc": "acc"})
    lines = ["acc = 0.0", "for j0 in range(D0):", "    acc += w[j0] * t1[j0]", "t2 = acc"]
    out = schedule(["t1 = np.empty((D0, ))", *lines[:1], Nest((D0,), ["t1[i0] = w[i0]"]),
                    *lines[1:], a])
    flat = [m for x in out for m in (x if isinstance(x, list) else [x])]
    assert flat.index(a) > flat.index("t2 = acc")


def test_a_view_and_its_base_are_one_array():
    """Dependences are read off names: a nest writing through a view (t2 = t1.reshape(...))
    and one reading the base at a shifted index must keep their order, not fuse."""
    a = Nest((D0, D1), ["t2[i0, i1] = u[i0, i1]**2"])
    b = Nest((TOP, D1), [], total=("s", "t1[i0 + 1, i1] - t1[i0, i1]"))
    out = schedule(["t2 = t1.reshape((D0, D1))", a, b])
    assert _kinds(out) == ["t2 = t1.reshape((D0, D1))", 1, 1]
    # views of the outputs written under their own names only still fuse
    c = Nest((D0, D1), ["t3[i0, i1] = 2.0*u[i0, i1]"])
    out = schedule(["t3 = g[0:o1].reshape((D0, D1))", c, b])
    assert _kinds(out) == ["t3 = g[0:o1].reshape((D0, D1))", 2]
