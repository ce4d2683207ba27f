"""The README's Python examples run as written (in order, in one namespace, in a scratch dir)."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    # the excerpt of generated code is checked byte for byte by test_generated_current
    return [b for b in blocks if not b.lstrip().startswith("@numba.njit")]


@pytest.mark.slow  # every block in one namespace: 17 s of compile, cold
def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert len(blocks) >= 3
    ns: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)
    # the element-wise example evaluates the smoothing loss it shows
    v, g = ns["smooth"].value_and_grad(np.concatenate([[1.0], ns["y_obs"]]), y=ns["y_obs"],
                                       w=ns["weights"])
    want = np.sum(np.diff(ns["y_obs"]) ** 2)  # x = y_obs: the data term is zero
    assert abs(v - want) <= 1e-12 * want
    assert g.shape == (1001,) and g[0] == 0.0
    # the array example trains its network
    net = ns["net"]
    assert net.params == ("W1", "b1", "W2", "b2") and net.n_params == 99
    assert net.unpack(ns["res"].x)["W1"].shape == (16, 2)
    assert ns["res"].status == "completed" and ns["res"].fun < 0.5


def test_performance_table_is_results_md():
    """The README's performance table is the one ``benchmarks/run_all.py`` wrote."""
    import importlib.util

    path = README.parent / "benchmarks" / "run_all.py"
    spec = importlib.util.spec_from_file_location("run_all", path)
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    results = (README.parent / "benchmarks" / "RESULTS.md").read_text()
    rows = run_all.read_rows()
    assert rows, "benchmarks/RESULTS.md holds no figures: run python benchmarks/run_all.py"
    assert run_all.table_in(results) == run_all.table(rows)
    assert run_all.table_in(README.read_text()) == run_all.table(rows), (
        "README's performance table differs from benchmarks/RESULTS.md: "
        "run python benchmarks/run_all.py --readme")
