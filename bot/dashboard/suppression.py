"""Small-cell suppression of the dashboard's numbers.

An official sees exact numbers for the units inside their scope. For units outside it (a commune official
looking at the province total or at a neighbouring commune), a count of 1 to 4 households is shown as "<5":
in a hamlet of a few hundred households, "2 poor households in ấp X" is close to naming them. Zero is shown
as it is (there is no household to point at), and so is every count from 5 up. A rate is suppressed when its
numerator or its denominator is.

This is primary suppression only: where one cell of a row is hidden and the row's total is shown, subtraction
can give it back. Complementary suppression (hiding a second cell) is not done; the outside views are
anonymous counts of self-assessments, never household lists, which stay strictly inside the scope.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = ["MIN_CELL", "Cell", "cell", "rate_cell"]

#: Smallest count shown exactly outside the viewer's scope.
MIN_CELL: Final = 5


def _thousands(value: int) -> str:
    # Vietnamese writes 12.345 for twelve thousand.
    return f"{value:,}".replace(",", ".")


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """One number as the viewer may see it.

    Attributes:
        value: The exact number, or None when it is suppressed.
        suppressed: True when the number is hidden ("<5").
    """

    value: int | None
    suppressed: bool = False

    @property
    def text(self) -> str:
        """The number as displayed: "1.234", or "<5" when hidden."""
        return f"<{MIN_CELL}" if self.suppressed or self.value is None else _thousands(self.value)

    def __str__(self) -> str:
        return self.text

    @property
    def plot(self) -> int:
        """Value to draw in a chart (0 when hidden, so a bar never hints at it)."""
        return 0 if self.suppressed or self.value is None else self.value


def cell(count: int, inside: bool) -> Cell:
    """Return ``count`` as the viewer may see it: exact inside their scope, "<5" for 1-4 outside it."""
    if not inside and 0 < count < MIN_CELL:
        return Cell(None, True)
    return Cell(int(count))


@dataclasses.dataclass(frozen=True, slots=True)
class RateCell:
    """A share (0-1) as the viewer may see it; None when hidden or undefined (no denominator)."""

    value: float | None
    suppressed: bool = False
    numerator: Cell = Cell(0)
    denominator: Cell = Cell(0)

    @property
    def text(self) -> str:
        if self.suppressed:
            return f"<{MIN_CELL}"
        if self.value is None:
            return "—"
        return f"{self.value * 100:.0f}%".replace(".", ",")

    def __str__(self) -> str:
        return self.text


def rate_cell(numerator: int, denominator: int, inside: bool) -> RateCell:
    """Return ``numerator / denominator`` for display, hidden when either count would be."""
    top, bottom = cell(numerator, inside), cell(denominator, inside)
    if top.suppressed or bottom.suppressed:
        return RateCell(None, True, top, bottom)
    if denominator <= 0:
        return RateCell(None, False, top, bottom)
    return RateCell(numerator / denominator, False, top, bottom)
