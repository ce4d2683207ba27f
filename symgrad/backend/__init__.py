"""symgrad.backend."""
