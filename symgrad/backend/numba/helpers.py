"""Helper functions generated modules call (kink functions, overlap checks, complex variants).

Each helper is defined once, in :data:`HELPERS` (real) or :data:`COMPLEX_HELPERS` (the
complex-step variants); a module carries only the helpers its functions call, with the helpers
those call, in the fixed order of these blocks (:func:`helpers_for`), so its text follows the
formula and is deterministic.

The kink functions that only compare and select (``_heaviside``, ``_sign``, ``_relu``) are
``inline='always'``: Numba puts their bodies into the caller instead of compiling each as a
function of its own (about 0.05 s apiece in a cold build, and two cache files each). The
caller's fastmath flags (``reassoc``, ``contract``) do not change a comparison or a selection, so
the results are the same bits; helpers with arithmetic stay functions, compiled without them.

>>> text = helpers_for("    return _overlap(g, x) or _relu(z)")
>>> [ln[4:ln.index("(")] for ln in text.splitlines() if ln.startswith("def ")]
['_overlap', '_relu']
>>> helpers_for("    return x[0] * x[1]")
''
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["COMPLEX_HELPERS", "HELPERS", "OVERLAP_HELPER", "helpers_for", "lse_helper"]


def lse_helper(arity: int, cplx: bool) -> str:
    """``_logsumexp<arity>`` (``_c``: its complex variant), max-shifted."""
    a = [f"a{j}" for j in range(arity)]
    if cplx:
        return "\n".join([
            "@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)",
            f"def _logsumexp{arity}_c({', '.join(a)}):",
            f"    m = max({', '.join(x + '.real' for x in a)})",
            "    return m + cmath.log(" + " + ".join(f"cmath.exp({x} - m)" for x in a) + ")"])
    m = a[0]
    for x in a[1:]:
        m = f"max({m}, {x})"
    return "\n".join([
        "@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)",
        f"def _logsumexp{arity}({', '.join(a)}):",
        f"    m = {m}",
        "    if math.isinf(m):",
        "        return m",
        "    return m + math.log(" + " + ".join(f"math.exp({x} - m)" for x in a) + ")"])


#: The out-overlap check every driver makes; shared in a process by the modules symgrad
#: imports from its cache (:mod:`symgrad.build.shared`).
OVERLAP_HELPER = '''
@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _overlap(a, b):
    # whether the memory spans of a and b overlap (conservative, as np.may_share_memory);
    # each span in place (a helper function per span would be one more compile per type)
    if a.size == 0 or b.size == 0:
        return False
    a0 = a1 = a.ctypes.data
    for d in range(a.ndim):
        ext = (a.shape[d] - 1) * a.strides[d]
        if ext < 0:
            a0 += ext
        else:
            a1 += ext
    b0 = b1 = b.ctypes.data
    for d in range(b.ndim):
        ext = (b.shape[d] - 1) * b.strides[d]
        if ext < 0:
            b0 += ext
        else:
            b1 += ext
    return a0 < b1 + b.itemsize and b0 < a1 + a.itemsize
'''

HELPERS = OVERLAP_HELPER + '''

@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True, inline='always')
def _heaviside(z, at_zero):
    if z > 0.0:
        return 1.0
    if z < 0.0:
        return 0.0
    return at_zero if z == 0.0 else z


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True, inline='always')
def _sign(z):
    if z > 0.0:
        return 1.0
    if z < 0.0:
        return -1.0
    return z


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True, inline='always')
def _relu(z):
    return z if not z < 0.0 else 0.0


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _floor(z):
    return np.floor(z)


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _ceil(z):
    return np.ceil(z)


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z))) if z == z else z
'''

COMPLEX_HELPERS = '''
@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _ipow_c(z, k):
    r = z * 0.0 + 1.0
    b = z
    m = k if k >= 0 else -k
    while m:
        if m & 1:
            r = r * b
        b = b * b
        m >>= 1
    return r if k >= 0 else 1.0 / r


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _sigmoid_c(z):
    if z.real >= 0.0:
        return 1.0 / (1.0 + cmath.exp(-z))
    e = cmath.exp(z)
    return e / (1.0 + e)


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _softplus_c(z):
    if z.real > 0.0:
        return z + cmath.log(1.0 + cmath.exp(-z))
    return cmath.log(1.0 + cmath.exp(z))


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _log1p_c(z):
    return cmath.log(1.0 + z) if abs(z) > 1e-4 else z - z * z / 2.0 + z * z * z / 3.0


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _expm1_c(z):
    return cmath.exp(z) - 1.0 if abs(z) > 1e-4 else z + z * z / 2.0 + z * z * z / 6.0


@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True)
def _erf_c(z):
    # erf(a + ib) to first order in b: enough for complex-step with tiny imaginary parts
    a = z.real
    return complex(math.erf(a), 2.0 / math.sqrt(math.pi) * math.exp(-a * a) * z.imag)
'''




def _blocks(text: str) -> dict[str, str]:
    """``name -> definition`` for each function (decorator and body) in ``text``, in order."""
    out = {}
    for block in text.strip("\n").split("\n\n\n"):
        name = re.search(r"^def (\w+)\(", block, re.M)
        assert name, block
        out[name.group(1)] = block
    return out


_TABLE = {**_blocks(HELPERS), **_blocks(COMPLEX_HELPERS)}
_CALL = re.compile(r"\b(_\w+)\(")


def helpers_for(text: str, extra: Sequence[str] = ()) -> str:
    """The definitions of the helpers ``text`` calls and of the helpers they call, in table
    order, separated by two blank lines ('' when none). ``extra``: more helper definitions
    (each one function's text, as in :data:`HELPERS`) to choose from, after the table."""
    table = {**_TABLE, **{n: b for e in extra for n, b in _blocks(e).items()}}
    want, todo = set(), [n for n in _CALL.findall(text) if n in table]
    while todo:
        name = todo.pop()
        if name not in want:
            want.add(name)
            body = table[name].split("\n", 2)[2]  # what the helper calls, not its own name
            todo += [n for n in _CALL.findall(body) if n in table]
    return "\n\n\n".join(b for n, b in table.items() if n in want)
