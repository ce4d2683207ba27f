"""Errors raised for losses symgrad cannot take, in the user's terms."""

__all__ = ["ProblemError"]


class ProblemError(ValueError):
    """The loss cannot be compiled as written (the message says why and what to do)."""
