"""symgrad.build."""
