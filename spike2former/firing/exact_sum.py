"""Floating-point sums that do not depend on the order or grouping of their terms.

A firing run split over processes adds its per-image terms in another order than one process
does, and plain float addition would then differ in the last bits. ``ExactSum`` keeps the exact
sum of its terms as a few non-overlapping floats (Shewchuk's algorithm, the one behind
``math.fsum``) and rounds once when read, so the same terms give the same value, bit for bit,
however they were split and merged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class ExactSum:
    """The exact sum of finite float terms, correctly rounded by ``value``."""

    def __init__(self, terms: Iterable[float] = ()) -> None:
        self._partials: list[float] = []
        for term in terms:
            self.add(term)

    def add(self, term: float) -> None:
        """Add ``term`` without rounding (the partials grow only when bits would be lost)."""
        kept = 0
        for partial in self._partials:
            if abs(term) < abs(partial):
                term, partial = partial, term
            high = term + partial
            low = partial - (high - term)
            if low:
                self._partials[kept] = low
                kept += 1
            term = high
        self._partials[kept:] = [term]

    def plus(self, other: ExactSum) -> ExactSum:
        """A new sum of both sums' terms."""
        total = ExactSum(self._partials)
        for partial in other._partials:
            total.add(partial)
        return total

    @property
    def value(self) -> float:
        return math.fsum(self._partials)

    def __repr__(self) -> str:
        return f"ExactSum({self.value!r})"
