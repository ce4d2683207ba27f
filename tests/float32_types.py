"""Shared by the float32 tests: which per-sample values a generated function keeps in float32."""

from __future__ import annotations

import numba

#: Named locals of a generated sample loop that must stay float32: parameters, data, temporaries
#: and directions.
LOCALS = ("p_", "d_", "_t", "_q")
DIRECTIONS = ("v0", "v1", "v2")


def promoted(dispatcher, *args, ops: tuple[str, ...] = ("binop", "unary", "call")) -> list[str]:
    """The values of a generated function that are not float32: its named per-sample locals
    of another type, and any float64 result of the expression kinds ``ops`` (leave out "call"
    where the outputs are widened with ``np.float64(...)`` on purpose)."""
    fn = numba.njit(error_model="numpy")(dispatcher.py_func)  # uncached: typed in this process
    fn(*args)
    ann = next(iter(fn.overloads.values())).type_annotation
    out = []
    for block in ann.blocks.values():
        for st in block.body:
            if not isinstance(st, numba.core.ir.Assign):
                continue
            name, value, typ = st.target.name, st.value, ann.typemap.get(st.target.name)
            local = name.split(".")[0]
            if local.startswith(LOCALS) or local in DIRECTIONS:
                if typ != numba.types.float32:
                    out.append(f"{name}: {typ}")
            elif (typ == numba.types.float64 and isinstance(value, numba.core.ir.Expr)
                  and value.op in ops):
                out.append(f"{name} = {value}")
    return out
