"""Pure logic for the web forms of every area: money typed in the reader's locale, and
a service's refusals shown at the fields they name, all at once."""
from collections.abc import Callable, Iterable

from flask import flash
from wtforms import StringField
from wtforms.validators import ValidationError

from app.formatting import money_input, parse_money


class MoneyField(StringField):
    """An amount typed as text in the reader's locale ("1 500,00", "1,500.00"), read
    into `minor_units` (None when empty or unreadable) without floats. Optional unless
    given DataRequired; `positive` refuses zero; an integer given as data (minor units)
    is shown in the reader's spelling."""

    def __init__(self, label=None, validators=None, positive: bool = False, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.positive = positive
        self.minor_units = None

    def process_data(self, value):
        super().process_data(money_input(value) if isinstance(value, int) else value)

    def pre_validate(self, form):
        self.minor_units = None
        text = (self.data or "").strip()
        if not text:
            return  # DataRequired says so when it is required
        try:
            self.minor_units = parse_money(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if self.positive and self.minor_units <= 0:
            self.minor_units = None
            raise ValidationError("The amount must be above zero.")


def show_problems(problems: Iterable[dict], field_named: Callable) -> None:
    """Each ({"field", "message"}) problem under the field it names, or flashed when
    no field of the form shows it; a field whose own check already failed keeps its
    own words (the service would say the same thing again)."""
    own = set()
    for problem in problems:
        field = field_named(problem["field"]) if problem["field"] else None
        if field is None:
            flash(problem["message"], "danger")
            continue
        if field.errors and id(field) not in own:
            continue
        own.add(id(field))
        field.errors = [*field.errors, problem["message"]]
