"""symgrad's version: its own module, so that a module of the package can read it without
importing the package (``from .. import __version__`` made an import cycle)."""

__version__ = "0.1.0"
