"""symgrad.ad."""
