"""symgrad.passes."""
