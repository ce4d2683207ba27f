"""The loop compiled: one generated Numba module per (kernel function, optimizer rule), cached.

The module (``sg_loop_<key>.py`` in the compile cache, written and verified by
:mod:`symgrad.build.cache`) imports the kernel's serial ``value_and_grad`` and the optimizer's
rule by name, jits the rule and defines ``loop``: steps ``k0..k1-1`` of the run, with the
stopping rules, the divergence checks and the history records of the Python loop
(:mod:`symgrad.train.python_loop`), operation for operation. Mini-batches pass index arrays
(slices of the epoch's permutation, drawn in Python from the same generator as the Python loop)
to the kernel function, so no data are copied. ``loop`` is ``njit(cache=True)`` on a real file:
a second process loads it from Numba's cache in milliseconds.

When the kernel function or the rule is not importable by name (a function of ``__main__``, a
closure), the same text is compiled for this process only, without Numba's cache.

>>> from symgrad.train.compiled import loop_text
>>> print(loop_text("from m import vg as _vg", "from r import rule as _rule_py", n_state=1,
...                 n_hyper=1, n_args=2, batch=False, cache=True).splitlines()[13])
@numba.njit(cache=True, nogil=True, error_model="numpy", no_cfunc_wrapper=True)
"""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from ..build.cache import GENERATED_MARK, cached_module
from . import norm
from .evaluate import direct_batches, gathered
from .plan import Plan

__all__ = ["compiled_reason", "loads_fast", "loop_function", "loop_text"]

# Status codes returned by the loop.
RUNNING, GTOL, TOL, DIV_LOSS, DIV_GRAD, DIV_BOUND, DIV_X = range(7)
# Packed arguments (few arguments keep Numba's per-call dispatch cheap):
#   W  (4 + n_state, n): rows x, the previous x (restored if x is not finite), g, the final
#      gradient, then the optimizer state
#   K  (2, n), a float32 kernel only: rows x rounded to the kernel's type, the kernel's gradient
#   H  (3, records): rows loss, |g|, lr (no lr row for a constant rate); S int64: the steps
#   HX (records, n) with record_x, else (0, n): the recorded iterates
#   ip int64: k0, k1, record_every, next record step, records written, lr stride (0: constant
#             rate stored once), epoch's first step, batch size, samples
#   fp float64: tol, gtol, loss bound (diverge_factor until step 0 sets it), f_prev,
#             epoch loss sum, epoch sample count
IP_K0, IP_K1, IP_REC, IP_NEXT, IP_NREC, IP_LSTRIDE, IP_EPOCH, IP_BS, IP_N = range(9)
FP_TOL, FP_GTOL, FP_BOUND, FP_PREV, FP_ESUM, FP_EN = range(6)


def loop_text(vg_import: str, rule_import: str, *, n_state: int, n_hyper: int, n_args: int,
              batch: bool, cache: bool, gather: tuple[bool, ...] = (), cast: bool = False,
              narrow: bool = False) -> str:
    """The body of a loop module (deterministic; its size follows the optimizer, not the data).

    ``n_args`` data arguments follow the kernel's ``(x, g)``. With ``batch`` the last one (a
    scalar kernel's sample indices) is replaced by the batch's slice of the permutation; or,
    for an array kernel, the arguments flagged in ``gather`` are passed as their batch rows
    (``a[perm[lo:hi]]``, a contiguous copy for BLAS, as the array kernel gathers a batch).

    With ``cast`` the kernel computes in another type than the float64 state (a float32
    kernel): it gets ``K[0]``, x rounded to its type (kept in step by the update loop), and
    writes its gradient into ``K[1]``, which the norm and update loops read widened (each
    element once: float32 traffic, no extra pass); ``g`` (W[2]) gets it at the slice's end.
    With ``narrow`` the kernel takes float64 x but rounds it to float32 (a float32 scalar or
    fused kernel): an update beyond float32's range ends the run as with ``cast``.
    """
    gi = "numba.float64(gk[i])" if cast else "g[i]"  # (Numba: float(f32) is f32)
    args = [f"a{j}" for j in range(n_args)]
    if batch and gather:
        call = [f"{a}[perm[lo:hi]]" if pick else a for a, pick in zip(args, gather, strict=True)]
    else:
        call = [*args[:-1], "perm[lo:hi]"] if batch else args
    state = [f"s{j}[i]" for j in range(n_state)]
    hyper = [f"h{j}" for j in range(n_hyper)]
    L = [
        "import math",
        "",
        "import numba",
        "",
        "from symgrad.train.norm import sq_norm as _sq_norm",
        vg_import,
        rule_import,
        "",
        '_rule = numba.njit(error_model="numpy", no_cfunc_wrapper=True)(_rule_py)',
        "",
        "",
        "# See symgrad/train/compiled.py for the packed arguments and the status codes.",
        "",
        f'@numba.njit(cache={cache}, nogil=True, error_model="numpy", no_cfunc_wrapper=True)',
        f"def loop(W, {'K, ' if cast else ''}lrs, H, S, HX, ip, fp, hyper, perm"
        f"{''.join(', ' + a for a in args)}):",
        "    x = W[0]",
        *(["    xk = K[0]", "    gk = K[1]"] if cast else []),
        "    xn = W[1]",
        "    g = W[2]",
        *(f"    s{j} = W[{4 + j}]" for j in range(n_state)),
        "    n = x.size",
        f"    k1 = ip[{IP_K1}]",
        f"    rec = ip[{IP_REC}]",
        f"    nxt = ip[{IP_NEXT}]",
        f"    r = ip[{IP_NREC}]",
        f"    lstride = ip[{IP_LSTRIDE}]",
        f"    kb = ip[{IP_EPOCH}]",
        f"    bs = ip[{IP_BS}]",
        f"    ns = ip[{IP_N}]",
        f"    tol = fp[{FP_TOL}]",
        f"    gtol = fp[{FP_GTOL}]",
        f"    bound = fp[{FP_BOUND}]",
        f"    f_prev = fp[{FP_PREV}]",
        f"    e_sum = fp[{FP_ESUM}]",
        f"    e_n = fp[{FP_EN}]",
        *(f"    h{j} = hyper[{j}]" for j in range(n_hyper)),
        f"    status = {RUNNING}",
        "    k_end = k1",
        "    fk = math.nan",
        "    detail = 0.0",
        f"    for k in range(ip[{IP_K0}], k1):",
        *(["        lo = (k - kb) * bs", "        hi = min(lo + bs, ns)"] if batch else []),
        f"        fk = _vg({'xk, gk' if cast else 'x, g'}{''.join(', ' + a for a in call)})",
        f"        gn2 = _sq_norm({'gk' if cast else 'g'})",
        "        if k == 0:",
        "            bound = bound * max(1.0, abs(fk)) if math.isfinite(fk) else math.inf",
        "        if not math.isfinite(fk):",
        f"            status = {DIV_LOSS}",
        "        elif not math.isfinite(gn2):",
        "            for i in range(n):",
        f"                if not math.isfinite({gi}):",
        f"                    status = {DIV_GRAD}",
        f"        if status == {RUNNING} and fk > bound:",
        f"            status = {DIV_BOUND}",
        f"        if status == {RUNNING} and gtol >= 0.0 and math.sqrt(gn2) <= gtol:",
        f"            status = {GTOL}",
        f"        if status == {RUNNING} and k > 0 and tol >= 0.0:",
        "            d = abs(f_prev - fk) / max(abs(f_prev), abs(fk), 1.0)",
        "            if d <= tol:",
        f"                status = {TOL}",
        "                detail = d",
        f"        if status != {RUNNING}:",
        "            k_end = k",
        f"            if status != {TOL}:",
        "                detail = math.sqrt(gn2)",
        "            break",
        "        a = lrs[k * lstride]",
        "        if k == nxt:",
        "            S[r] = k",
        "            H[0, r] = fk",
        "            H[1, r] = math.sqrt(gn2)",
        "            if lstride:",
        "                H[2, r] = a",
        "            if HX.shape[0] > 0:",
        "                for i in range(n):",
        "                    HX[r, i] = x[i]",
        "            r += 1",
        "            nxt = k + rec",
        # ``bad`` is an integer OR, so the update loop vectorizes (a float sum of ``u * 0.0``
        # did not: 490 us against 69 us for Adam on 101,770 parameters, the same bits)
        "        bad = False",
        "        for i in range(n):",
        "            xi = x[i]",
        "            xn[i] = xi",
        f"            u = _rule(xi, {gi}, {', '.join([*state, 'a', 'k', *hyper])})",
        "            x[i] = u[0]",
        # (an entry beyond the kernel's float32 range is inf there: caught as non-finite)
        *(["            xk[i] = u[0]", "            ui = xk[i]"] if cast
          else ["            ui = numba.float32(u[0])"] if narrow
          else ["            ui = u[0]"]),
        "            bad |= ui - ui != 0.0",
        *(f"            {s} = u[{j + 1}]" for j, s in enumerate(state)),
        "        if bad:  # an entry is inf or nan: back to the last finite iterate",
        "            for i in range(n):",
        "                x[i] = xn[i]",
        *(["                xk[i] = xn[i]"] if cast else []),
        f"            status = {DIV_X}",
        "            k_end = k",
        "            detail = math.sqrt(gn2)",
        "            break",
        "        f_prev = fk",
        *(["        e_sum += fk * (hi - lo)", "        e_n += hi - lo"] if batch else []),
        *(["    for i in range(n):", "        g[i] = gk[i]"] if cast else []),
        f"    ip[{IP_NEXT}] = nxt",
        f"    ip[{IP_NREC}] = r",
        f"    fp[{FP_BOUND}] = bound",
        f"    fp[{FP_PREV}] = f_prev",
        f"    fp[{FP_ESUM}] = e_sum",
        f"    fp[{FP_EN}] = e_n",
        "    return status, k_end, fk, detail",
        "",
    ]
    return "\n".join(L)


# --------------------------------------------------------------------------- the module


def _ref(fn: Any) -> tuple[str, str] | None:
    """``(module, name)`` under which ``fn`` (a function or a Numba dispatcher) is importable
    from its own file, or None."""
    py = getattr(fn, "py_func", fn)
    mod, name = getattr(py, "__module__", None), getattr(py, "__name__", None)
    m = sys.modules.get(mod) if mod else None
    if (m is None or mod == "__main__" or getattr(m, name, None) is not fn
            or not getattr(m, "__file__", None) or not str(name).isidentifier()
            or not all(part.isidentifier() for part in mod.split("."))):
        return None
    return mod, name


def _digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


_LOOPS: dict[tuple, tuple[Any, bool]] = {}


def _header(key: str, digest: str) -> str:
    return (f"{GENERATED_MARK}# symgrad training loop {key}: one kernel function and one "
            f"optimizer rule\n# content hash: {digest}\n")


def _spec(p: Plan) -> tuple:
    batch = p.batch_size is not None
    return (p.jit_vg, p.opt.rule, p.opt.n_state, len(p.opt.hyper), len(p.jit_args), batch,
            gathered(p) if batch else (), p.dtype != np.float64, p.arith != p.dtype)


def loads_fast(p: Plan) -> bool:
    """Whether the loop for ``p`` is compiled in this process already or can be cached on disk
    (its kernel function and rule are importable by name), so that only the first run on the
    machine compiles it."""
    return _spec(p) in _LOOPS or None not in (_ref(p.jit_vg), _ref(p.opt.rule))


def loop_function(p: Plan) -> tuple[Any, bool]:
    """``(loop dispatcher, cached on disk)`` for the plan's kernel function and rule."""
    spec = _spec(p)
    vg, rule, batch, gather, cast, narrow = (p.jit_vg, p.opt.rule, *spec[5:9])
    got = _LOOPS.get(spec)
    if got is not None:
        return got
    refs = _ref(vg), _ref(rule)
    cache = None not in refs
    shape = dict(n_state=p.opt.n_state, n_hyper=len(p.opt.hyper), n_args=len(p.jit_args),
                 batch=batch, cache=cache, gather=gather, cast=cast, narrow=narrow)
    if cache:
        (km, kn), (rm, rn) = refs
        deps = _digest([sys.modules[km].__file__, sys.modules[rm].__file__, norm.__file__])
        body = (f"# depends on {km} and {rm}, digest {deps}\n"
                + loop_text(f"from {km} import {kn} as _vg", f"from {rm} import {rn} as _rule_py",
                            **shape))
        got = (_load_cached(body).loop, True)
    else:
        body = loop_text("_vg = _IN[0]  # not importable: compiled for this process only",
                         "_rule_py = _IN[1]", **shape)
        ns: dict[str, Any] = {"__name__": "symgrad_loop", "_IN": (vg, rule)}
        exec(compile(body, "<symgrad training loop>", "exec"), ns)
        got = (ns["loop"], False)
    _LOOPS[spec] = got
    return got


def _load_cached(body: str) -> types.ModuleType:
    key = "loop_" + hashlib.sha256(body.encode()).hexdigest()[:24]
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return cached_module(key, lambda d: _header(key, d), lambda: _header(key, digest) + body)[2]


def compiled_reason(p: Plan) -> str:
    """Why the compiled loop cannot run ('' when it can)."""
    if not p.kernel and type(p.f).__module__.startswith("symgrad.distributed"):
        return ("the loss runs on Dask columns: each step is a map-reduce over the chunks "
                "driven from this process (the Python loop)")
    if not p.kernel:
        return ("f is not a symgrad Kernel of a loss (kind 'scalar' or 'array'): "
                + ("its value_and_grad method runs in the Python loop" if p.how == "method"
                   else "a plain callable runs in the Python loop"))
    if p.opt.rule is None:
        return (f"optimizer {p.opt.name!r} is a hand-written (init, update) pair with no "
                "compiled update (define it with optim.from_rule to compile it)")
    if p.callback is not None:
        return "a Python callback needs the Python loop"
    if p.dtype not in (np.float64, np.float32):
        return f"a {p.dtype} kernel runs in the Python loop (the compiled loop is float64/32)"
    if p.batch_size is not None and not (direct_batches(p) or gathered(p)):
        return ("mini-batches run in the Python loop here: this kernel's compiled function does "
                "not take sample indices")
    return ""
