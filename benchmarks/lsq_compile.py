"""Cold compile time of the least-squares kernel against the number of parameters P.

    python benchmarks/lsq_compile.py [--P 10 20 40 80] [--timeout 600]

The residual is a sum of P/2 exponentials, ``sum_k a_k*exp(-b_k*t) - y``: every residual
depends on every parameter, so J^T J has P(P+1)/2 distinct entries. Each P runs in a fresh
process with an empty cache directory and reports: deriving and writing the module text
(``compile_residuals``), then Numba's compilation of each entry point on its first call
(``normal``, ``rows``, ``residuals``, ``jvp``, ``vjp``); "total" is what a cold ``symgrad fit``
pays before its first iteration. "cpu" is the child process's CPU time (user + system): on a
busy machine it is closer than the wall times to what a quiet one takes (compilation is
single-threaded).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import record

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import numpy as np
import symgrad as sg
P = int(sys.argv[1])
K = P // 2
ps = sg.params(" ".join(f"a{k} b{k}" for k in range(K)))
t, y = sg.data("t y")
expr = sum(ps[2 * k] * sg.exp(-ps[2 * k + 1] * t) for k in range(K)) - y
out = {}
t0 = time.perf_counter(); rk = sg.compile_residuals(expr); out["text"] = time.perf_counter() - t0
x = np.linspace(0.5, 1.5, P); tt = np.linspace(0, 1, 50); yy = np.cos(tt)
calls = {"normal": lambda: rk.normal(x, t=tt, y=yy),
         "rows": lambda: rk.rows(x, 0, 10, t=tt, y=yy),
         "residuals": lambda: rk.residuals(x, t=tt, y=yy),
         "jvp": lambda: rk.jvp(x, x, t=tt, y=yy),
         "vjp": lambda: rk.vjp(x, np.ones(50), t=tt, y=yy)}
for name, fn in calls.items():
    t0 = time.perf_counter(); fn(); out[name] = time.perf_counter() - t0
print(json.dumps(out))
"""


def measure(P: int, timeout: float) -> dict | None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMGRAD_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            p = subprocess.run([sys.executable, "-c", CHILD, str(P)], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if p.returncode:
            raise SystemExit(p.stderr)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        out["process"], out["cpu"] = wall, cpu
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--P", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per P")
    args = ap.parse_args()
    print(f"{'P':>4} {'text':>7} {'normal':>7} {'rows':>7} {'resid':>7} {'jvp':>7} {'vjp':>7}"
          f" {'total':>7} {'cpu':>7}   (seconds, cold cache)")
    for P in args.P:
        r = measure(P, args.timeout)
        if r is None:
            print(f"{P:>4}  still compiling after {args.timeout:.0f} s")
            continue
        total = sum(r[k] for k in ("text", "normal", "rows", "residuals", "jvp", "vjp"))
        print(f"{P:>4} {r['text']:7.2f} {r['normal']:7.2f} {r['rows']:7.2f} "
              f"{r['residuals']:7.2f} {r['jvp']:7.2f} {r['vjp']:7.2f} {total:7.2f} {r['cpu']:7.2f}",
              flush=True)
        record("lsq_compile", f"residual kernel, P = {P}: cold compile of every entry point "
               "(CPU time)", r["cpu"], unit="s", target=30 if P <= 80 else None)


if __name__ == "__main__":
    main()
