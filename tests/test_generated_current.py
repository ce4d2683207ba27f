"""The committed modules in generated/ are exactly what the examples generate today."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python examples/regenerate.py"


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("symgrad_examples_regenerate",
                                                  ROOT / "examples" / "regenerate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("generated")
    paths = _regenerate_module().regenerate(out)
    return {p.name: p.read_bytes() for p in paths}


def test_every_generated_file_is_committed(fresh):
    committed = {p.name for p in (ROOT / "generated").glob("*.py")}
    missing = sorted(set(fresh) - committed)
    stale = sorted(committed - set(fresh))
    assert not missing, f"generated/ lacks {missing}: run `{COMMAND}` and commit the result"
    assert not stale, f"generated/ has files no example produces: {stale}; delete them"


def test_generated_files_are_current(fresh):
    for name, text in fresh.items():
        committed = (ROOT / "generated" / name).read_bytes()
        assert committed == text, (
            f"generated/{name} is out of date (it differs from what the examples generate "
            f"now): run `{COMMAND}` and commit the result")


def test_generated_module_imports_without_symgrad(fresh, tmp_path):
    """A committed module needs only NumPy and Numba: its header says how to regenerate it."""
    text = (ROOT / "generated" / "rosenbrock.py").read_text()
    assert "do not edit" in text.splitlines()[0]
    assert f"regenerate with: {COMMAND}" in text
    assert "import symgrad" not in text and "sympy" not in text


def test_readme_shows_the_current_generated_code():
    """The README's excerpt of generated/backprop_graph.py is a verbatim piece of it."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("@numba.njit(cache=True, error_model='numpy', no_cfunc_wrapper=True, "
                         "fastmath=_FASTMATH, nogil=True)\ndef _acc_g(")
    excerpt = readme[start:readme.index("```", start)].rstrip("\n")
    assert excerpt in (ROOT / "generated" / "backprop_graph.py").read_text(), (
        "README.md's generated-code excerpt is out of date: copy _acc_g from "
        "generated/backprop_graph.py")
