"""The derivative values at kinks: :class:`KinkPolicy` (recorded in every generated module).

>>> KinkPolicy(tie="1/4").describe()
"relu'(0)=0.0, abs'(0)=0.0, max/min tie=0.25"
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lang.parse import ExprError, parse_number

__all__ = ["KinkPolicy"]


@dataclass(frozen=True)
class KinkPolicy:
    """Derivative values at kinks (recorded in every generated module).

    relu'(0) = ``relu``, d|x|/dx at 0 = ``abs``, and a tie in a two-argument Max/Min gives each
    argument ``tie`` of the derivative. ``Max(a, b, c, ...)`` is evaluated and differentiated as
    the chain ``Max(Max(Max(a, b), c), ...)`` (derivative code linear in the number of
    arguments), the tie rule applying at each link: with the default 1/2, a three-way tie
    ``a == b == c`` gives ``a`` and ``b`` 1/4 each and ``c`` 1/2 (the shares always sum to 1).
    Second derivatives of kinks (Dirac deltas) are 0.

    The values are real numbers; a string is parsed as a number by the safe expression parser
    (``"1/2"``), never evaluated.
    """

    relu: float = 0.0
    abs: float = 0.0
    tie: float = 0.5

    def __post_init__(self) -> None:
        for name in ("relu", "abs", "tie"):
            object.__setattr__(self, name, _policy_value(name, getattr(self, name)))

    def describe(self) -> str:
        return f"relu'(0)={self.relu!r}, abs'(0)={self.abs!r}, max/min tie={self.tie!r}"


def _policy_value(name: str, value) -> float:
    if isinstance(value, str):
        try:
            value = parse_number(value)
        except ExprError as exc:
            raise ValueError(f"KinkPolicy({name}=...): {exc}") from None
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"KinkPolicy({name}=...) takes a real number, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"KinkPolicy({name}=...) must be finite, got {v!r}")
    return v
