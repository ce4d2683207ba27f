"""symgrad.lang."""
