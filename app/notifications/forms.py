"""The notification settings form: two switches per kind of the user's role and,
for buyers, the balance below which they are told."""
from flask_wtf import FlaskForm
from wtforms import BooleanField

from app.forms import MoneyField
from app.models import Role
from app.people.notifications import KINDS, kinds_for


def settings_form(role: Role, **kwargs) -> FlaskForm:
    """A form class made for the role (its kinds), then instantiated."""

    class SettingsForm(FlaskForm):
        pass

    for kind in kinds_for(role):
        setattr(SettingsForm, f"{kind.value}_in_app", BooleanField("In the app"))
        setattr(SettingsForm, f"{kind.value}_email", BooleanField("By email"))
    if role is Role.BUYER:
        SettingsForm.threshold = MoneyField(
            "Tell me when my available balance falls below",
            description="An amount such as 100.00; empty: never. You are told once each "
                        "time your balance falls below it, and at once if it already is "
                        "when you save.")
    return SettingsForm(**kwargs)


def rows(form, role: Role) -> list[tuple]:
    """(label, description, in-app field, email field) per kind, in catalogue order."""
    return [(KINDS[kind].label, KINDS[kind].description, form[f"{kind.value}_in_app"],
             form[f"{kind.value}_email"]) for kind in kinds_for(role)]
