"""Run every benchmark of the README's performance table and write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py                 # all of them (about 15 minutes on 2 cores)
    python benchmarks/run_all.py --only logistic mlp_step
    python benchmarks/run_all.py --readme        # also rewrite the README's performance table

Each script runs in a fresh process with the environment as it is (no thread variables are
added: the default environment is what users get; scripts that compare against one BLAS thread
do so themselves and say so in the figure's name). Each figure a script passes to
``report.record`` becomes one row: the figure, its target, and ``pass`` or ``short``. The file
also records the machine, the library versions, the BLAS pools and the load average, so that a
regression shows up in ``git diff benchmarks/RESULTS.md``. ``--only`` re-runs some scripts and
keeps the other rows of the existing file.

The README's table (between ``<!-- results:begin -->`` and ``<!-- results:end -->``) is the
table of this file; ``tests/test_readme.py`` checks that they agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# (script, arguments[, environment]): the commands of the README's performance table, in order.
SCRIPTS: list[tuple] = [
    ("call_latency", []),
    ("expression_swell", []),
    ("ext_rosenbrock", []),
    ("optimizer_loop", []),
    ("data_loss", ["--sizes", "1e6", "1e7"]),
    ("second_order", []),
    ("checker_accuracy", []),
    ("mlp_step", []),
    ("model_predict", []),
    ("logistic", []),
    ("logistic", ["--no-build"], {"OPENBLAS_NUM_THREADS": "1"}),
    ("index_arrays", []),
    ("fused_arrays", []),
    ("columns", []),
    ("float32_scalar", []),
    ("least_squares", []),
    ("lsq_pass", []),
    ("lsq_compile", ["--P", "10", "40", "80"]),
    ("strd", []),
    ("dask_scaling", ["--samples", "2e7", "--overhead-chunks", "1e6", "4e6"]),
]
TIMEOUT = 1800.0


def _versions() -> str:
    code = ("import numpy, scipy, numba, sympy, platform; print(platform.python_version(), "
            "numpy.__version__, scipy.__version__, numba.__version__, sympy.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    py, np_, sc, nb, sy = (out.split() + ["?"] * 5)[:5]
    return f"Python {py}, NumPy {np_}, SciPy {sc}, Numba {nb}, SymPy {sy}"


def _blas_pools() -> str:
    code = ("import numpy, scipy.linalg\n"
            "try:\n from threadpoolctl import threadpool_info\n"
            "except ImportError:\n print('threadpoolctl not installed'); raise SystemExit\n"
            "print('; '.join(f\"{p['internal_api']} {p.get('version')} ({p['prefix']}, "
            "{p['num_threads']} threads)\" for p in threadpool_info()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty else "")


def command(name: str, args: list[str], extra: dict | None = None) -> str:
    """The command line of one benchmark, as the README shows it."""
    prefix = [f"{k}={v}" for k, v in (extra or {}).items()]
    return " ".join([*prefix, f"benchmarks/{name}.py", *args])


def run_script(name: str, args: list[str], extra: dict | None = None
               ) -> tuple[list[dict], float, int]:
    """Run one benchmark; return its recorded rows, the wall time and the exit status."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as fh:
        path = fh.name
    env = dict(os.environ, SYMGRAD_BENCH_RECORD=path, **(extra or {}))
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    print(f"\n=== python {command(name, args, extra)}", flush=True)
    t0 = time.perf_counter()
    try:
        status = subprocess.run(cmd, cwd=ROOT, env=env, timeout=TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        status = -1
    wall = time.perf_counter() - t0
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    os.unlink(path)
    for row in rows:
        row["command"] = command(name, args, extra)
    return rows, wall, status


def status_of(row: dict) -> str:
    target = row.get("target")
    if target is None:
        return ""
    ok = row["value"] <= target if row["better"] == "lower" else row["value"] >= target
    return "pass" if ok else "short"


def _fmt(value: float, unit: str) -> str:
    text = f"{value:.3g}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"
    return f"{text}{unit}" if unit in ("x", "%") else f"{text} {unit}".rstrip()


def table(rows: list[dict]) -> str:
    """The Markdown table of the figures (the README shows the same text)."""
    lines = ["| benchmark | figure | value | target | status |", "|---|---|---|---|---|"]
    for r in rows:
        target = ""
        if r.get("target") is not None:
            sign = "≤" if r["better"] == "lower" else "≥"
            target = f"{sign} {_fmt(r['target'], r['unit'])}"
        figure = r["figure"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| `{r['command']}` | {figure} | {_fmt(r['value'], r['unit'])} | "
                     f"{target} | {status_of(r)} |")
    return "\n".join(lines)


def read_rows(path: Path = RESULTS) -> list[dict]:
    """The rows stored in RESULTS.md (its JSON block), or [] when there is none."""
    if not path.exists():
        return []
    m = re.search(r"```json\n(.*?)\n```", path.read_text(encoding="utf-8"), re.S)
    return json.loads(m.group(1)) if m else []


def table_in(text: str) -> str | None:
    """The text between the results markers of a file (README.md or RESULTS.md)."""
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n?" + re.escape(END), text, re.S)
    return m.group(1) if m else None


def write_results(rows: list[dict], notes: list[str]) -> None:
    load = os.getloadavg()
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NUMBA_NUM_THREADS"))}
    short = sum(status_of(r) == "short" for r in rows)
    text = "\n".join([
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {_commit()}. Do not edit: "
        "re-run it.",
        "",
        f"- machine: {_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}",
        f"- libraries: {_versions()}",
        f"- BLAS pools: {_blas_pools()}",
        f"- thread variables: {env or 'none set (the default environment)'}",
        f"- load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- {len(rows)} figures, {short} short of target",
        *[f"- {n}" for n in notes],
        "",
        BEGIN,
        table(rows),
        END,
        "",
        "The rows as data (read by `run_all.py --only`):",
        "",
        "```json",
        json.dumps(rows, indent=1),
        "```",
        "",
    ])
    RESULTS.write_text(text, encoding="utf-8")


def update_readme(rows: list[dict]) -> None:
    text = README.read_text(encoding="utf-8")
    if table_in(text) is None:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    new = re.sub(re.escape(BEGIN) + r"\n.*?\n?" + re.escape(END),
                 lambda _: f"{BEGIN}\n{table(rows)}\n{END}", text, flags=re.S)
    README.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="SCRIPT", help="run these scripts only")
    ap.add_argument("--readme", action="store_true", help="rewrite the README's table too")
    args = ap.parse_args(argv)
    names = sorted({s[0] for s in SCRIPTS})
    unknown = set(args.only or ()) - set(names)
    if unknown:
        ap.error(f"unknown script(s) {sorted(unknown)}; choose from {names}")
    old = read_rows() if args.only else []
    rows, notes = [], []
    for name, script_args, *extra in SCRIPTS:
        cmd = command(name, script_args, *extra)
        if args.only and name not in args.only:
            rows += [r for r in old if r["command"] == cmd]
            continue
        got, wall, status = run_script(name, script_args, *extra)
        rows += got
        notes.append(f"`{cmd}`: {wall:.0f} s" + ("" if status == 0 else f", exit {status}"))
    write_results(rows, notes)
    if args.readme:
        update_readme(rows)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}: {len(rows)} figures, "
          f"{sum(status_of(r) == 'short' for r in rows)} short of target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
