"""Regenerate the committed modules in generated/ from the examples' losses.

    python examples/regenerate.py [DIR]      (default: the repository's generated/)

Each example defines ``GENERATED`` (the file name) and ``generate(directory)``. Files are
rewritten only when their bytes change. tests/test_generated_current.py runs this into a
temporary directory and fails when a committed file differs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_GENERATED = HERE.parent / "generated"
#: The examples whose losses are committed under generated/, in a fixed order.
EXAMPLES = ("rosenbrock_learning_rate", "quadratic_fit", "two_layer_net", "momentum_escape",
            "backprop_graph")


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    mod_name = f"symgrad_example_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def regenerate(directory: str | Path = REPO_GENERATED) -> list[Path]:
    """Write every example's generated module into ``directory``; return the paths."""
    return [load_example(name).generate(directory) for name in EXAMPLES]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for path in regenerate(Path(argv[0]) if argv else REPO_GENERATED):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
