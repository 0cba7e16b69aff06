"""Pure logic: the one range of each kind of integer a request may carry.

Ids, amounts, counts and offsets each have one range, wide enough for any real use
and narrow enough that no column, loop or product of two of them can overflow a
64-bit integer. Every API field and web form field that carries such a number is
checked against its kind here, so a hostile number is a 4xx naming the field, never
a 500 from the database or a loop as long as the sender asks.
"""
import re
from dataclasses import dataclass

from app.errors import ValidationFailed

DECIMAL = re.compile(r"\s*[+-]?\d{1,30}\s*", re.ASCII)


@dataclass(frozen=True)
class IntRange:
    minimum: int
    maximum: int

    def narrowed(self, minimum: int | None = None, maximum: int | None = None) -> "IntRange":
        return IntRange(self.minimum if minimum is None else minimum,
                        self.maximum if maximum is None else maximum)

    def take(self, value, name: str) -> int:
        """`value` (an int, or decimal digits as text) within the range, or
        ValidationFailed naming `name`. Fractions and booleans are refused, never
        truncated."""
        if isinstance(value, str) and DECIMAL.fullmatch(value):
            value = int(value)
        if type(value) is not int:
            raise ValidationFailed(f"{_label(name)} must be a whole number.",
                                   code="not_an_integer", details={"field": name})
        if not self.minimum <= value <= self.maximum:
            raise ValidationFailed(
                f"{_label(name)} must be from {self.minimum:,} to {self.maximum:,}.",
                code="out_of_range", details={"field": name, "minimum": self.minimum,
                                              "maximum": self.maximum})
        return value

    def optional(self, value, name: str) -> int | None:
        """As take(), with None or blank text meaning "not given"."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return self.take(value, name)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


ID = IntRange(1, 2**31 - 1)  # a row of a table keyed by INTEGER
BIG_ID = IntRange(1, 2**63 - 1)  # leads, rejections, sales, webhook deliveries: BIGINT keys
AMOUNT = IntRange(0, 10**13)  # minor units: the largest movement the ledger takes
COUNT = IntRange(0, 10**6)  # leads, rows, caps
OFFSET = IntRange(0, 10**9)
PAGE = IntRange(1, 10**6)
PAGE_SIZE = IntRange(1, 5000)
