"""symgrad.ir."""
