"""Sizes that remember where they come from.

>>> d = Dim(128, "W1", 0)
>>> d == 128, d.key, Dim.part(d, 1, 0).key
(True, ('W1', 0, 0), ('W1', 0, 1))
"""

from __future__ import annotations

__all__ = ["Dim"]


class Dim(int):
    """A size (an int) that remembers which declared axis it is: ``axis`` of array ``owner``.

    Sizes compare as ints (shapes are checked by value), but the generated code names each
    declared axis by its owner, never by its value, so the text does not depend on the sizes
    (nor on two sizes happening to be equal).
    """

    owner: str
    axis: int

    def __new__(cls, size: int, owner: str, axis: int) -> Dim:
        obj = super().__new__(cls, size)
        obj.owner, obj.axis = owner, axis
        return obj

    #: Part of a declared axis (a slice): ``base - trim`` elements.
    base: Dim | None = None
    trim: int = 0

    @classmethod
    def part(cls, base: Dim, start: int, end: int) -> Dim:
        """The size of ``base[start:base - end]``, named after ``base``."""
        root = base.base or base
        obj = cls(int(base) - start - end, root.owner, root.axis)
        obj.base, obj.trim = root, base.trim + start + end
        return obj

    @property
    def key(self) -> tuple:
        return (self.owner, self.axis, self.trim)

    def __reduce__(self):
        return (Dim, (int(self), self.owner, self.axis))  # parts are rebuilt by window()
