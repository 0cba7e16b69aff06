from functools import lru_cache

import pycountry
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, IntegerField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, NumberRange

from app.formatting import user_language
from app.forms import MoneyField
from app.services.regions import country_name
from app.services.ingest.pipeline import MAX_CAP


def country_choices() -> list[SelectChoice]:
    """Every country, named and sorted in the reader's language."""
    return [SelectChoice(code, f"{name} ({code})")
            for code, name in _countries(user_language())]


@lru_cache(maxsize=16)
def _countries(language: str) -> tuple[tuple[str, str], ...]:
    named = ((c.alpha_2, country_name(c.alpha_2, language)) for c in pycountry.countries)
    return tuple(sorted(named, key=lambda pair: pair[1].casefold()))


class BatchTermsForm(FlaskForm):
    default_country = SelectField(
        "Country of numbers without a +prefix", validators=[DataRequired()],
        description="Phone numbers written without a country code are read as numbers of the "
                    "lead's country (its country, region or city column) or, when the row "
                    "gives none, of this country.")
    floor_price = MoneyField(
        "Floor price per lead", default=0,
        description="No lead of this batch is sold below this price.")
    cap = IntegerField(
        "Buyers per lead", default=1, validators=[NumberRange(min=1, max=MAX_CAP)],
        description="1 = exclusive: each lead goes to one buyer only. Shared leads sell for less.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_country.choices = country_choices()

    def floor(self) -> int:
        """The floor in minor units; empty is no floor."""
        return self.floor_price.minor_units or 0


class UploadForm(BatchTermsForm):
    file = FileField("CSV file or Excel workbook",
                     validators=[FileRequired("Choose a CSV file or an Excel workbook.")],
                     description="CSV in UTF-8, Windows-1251 or Latin-1, comma, semicolon or "
                                 "tab separated; or .xlsx (its first sheet). A header row first.")


class ConfirmUploadForm(BatchTermsForm):
    token = HiddenField(validators=[DataRequired()])
    filename = HiddenField()
    allow_same_file = BooleanField("Yes, create a second batch from this same file")
    confirm_floor = BooleanField("Yes, keep this floor although it is far above recent prices")
    allow_missing = BooleanField("Process it anyway: every row will be rejected, and listed "
                                 "in the rejections file")


class BatchTermsChangeForm(FlaskForm):
    """New floor and cap for a batch's unsold leads."""

    floor_price = MoneyField(
        "Floor price per lead", validators=[DataRequired()],
        description="The next sale of an unsold lead is made at this price or more; past "
                    "sales keep theirs.")
    cap = IntegerField(
        "Buyers per lead", validators=[DataRequired(), NumberRange(min=1, max=MAX_CAP)],
        description="Leads not sold yet take the new number. A lead already sold keeps the "
                    "promise made to its buyers: its number can go down to the buyers it "
                    "has, never below, and never up.")
    confirm = BooleanField("Yes, keep this floor although it is far above recent prices")
