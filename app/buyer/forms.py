from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField, DateTimeLocalField, IntegerField, SelectField, SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.formatting import parse_money
from app.market.filters import GENDERS, MARITAL_STATUSES, MAX_QUANTITY


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _money(field, required: bool):
    if not field.data and not required:
        field.minor_units = None
        return
    try:
        field.minor_units = parse_money(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc))


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").replace(";", ",").split(",") if part.strip()]


class FilterFields:
    """The filters of the order builder, shared by the order form and the estimate."""

    age_min = IntegerField("Age from", validators=[Optional(), NumberRange(18, 100)])
    age_max = IntegerField("Age to", validators=[Optional(), NumberRange(18, 100)])
    genders = CheckboxesField("Gender", choices=[SelectChoice(g) for g in GENDERS])
    regions = StringField("Regions", description="ISO codes, comma-separated: RU-MOW, ES-M, US-CA")
    countries = StringField("Countries", description="Two-letter codes: US, ES")
    require = SelectField("Contacts required", default="", choices=[
        SelectChoice("", "email or phone"), SelectChoice("phone", "phone"),
        SelectChoice("email", "email"), SelectChoice("both", "both")])
    marital_statuses = CheckboxesField("Marital status",
                                       choices=[SelectChoice(m) for m in MARITAL_STATUSES])
    employed = SelectField("Employed", default="", choices=[
        SelectChoice("", "any"), SelectChoice("yes"), SelectChoice("no"), SelectChoice("unknown")])
    interests = StringField("Interests (any of)", description="e.g. cars, travel")
    max_age_days = IntegerField("Consented within (days)", validators=[Optional(), NumberRange(1, 3650)])
    exclusive_only = BooleanField("Exclusive leads only (sold to no one else)")
    min_temperature = SelectField("Lead temperature at least", default="", choices=[
        SelectChoice("", "any (cold and up)"), SelectChoice("warm", "warm (score 40+)"),
        SelectChoice("hot", "hot (score 70+)")])
    min_score = IntegerField("Minimum score (0–100)", validators=[Optional(), NumberRange(0, 100)],
                             description="Points for contacts and demographics (35), freshness "
                                         "(30, fading over 90 days), intent answers (20) and "
                                         "the seller's record (15).")

    def filters_dict(self) -> dict:
        return {
            "age_min": self.age_min.data, "age_max": self.age_max.data,
            "genders": self.genders.data or [], "regions": _split(self.regions.data),
            "countries": _split(self.countries.data), "require": self.require.data or None,
            "marital_statuses": self.marital_statuses.data or [],
            "employed": self.employed.data or None, "interests": _split(self.interests.data),
            "max_age_days": self.max_age_days.data, "exclusive_only": self.exclusive_only.data,
            "min_score": self.min_score.data, "min_temperature": self.min_temperature.data or None,
        }


class OrderFiltersForm(FilterFields, FlaskForm):
    """The live estimate's GET: reads the builder's filters, changes nothing."""

    class Meta:
        csrf = False


class OrderForm(FilterFields, FlaskForm):
    name = StringField("Order name", description="For your own reference, e.g. the campaign.")
    price = StringField("Price per lead", validators=[DataRequired()], default="5.00")
    quantity = IntegerField("Quantity", validators=[DataRequired(), NumberRange(1, MAX_QUANTITY)],
                            default=100)
    budget = StringField("Total budget (optional)")
    daily_cap = IntegerField("Daily cap (optional)", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])
    delivery_start_hour = IntegerField("Deliver from hour", validators=[Optional(), NumberRange(0, 23)])
    delivery_end_hour = IntegerField("until hour", validators=[Optional(), NumberRange(1, 24)])
    timezone = StringField("Time zone", default="UTC")
    expires_at = DateTimeLocalField("Expires (optional)", validators=[Optional()])
    lookback_days = IntegerField("Never the same person twice within (days)", default=30,
                                 validators=[Optional(), NumberRange(0, 3650)])
    webhook_url = StringField("Webhook URL (optional)",
                              description="We POST each lead here the moment it is sold.")

    def validate_price(self, field):
        _money(field, required=True)

    def validate_budget(self, field):
        _money(field, required=False)

    def terms_kwargs(self) -> dict:
        expires = self.expires_at.data
        if expires is not None:
            try:
                expires = expires.replace(tzinfo=ZoneInfo(self.timezone.data or "UTC"))
            except (KeyError, ValueError):
                expires = expires.replace(tzinfo=ZoneInfo("UTC"))
        return {
            "budget": self.budget.minor_units, "expires_at": expires,
            "daily_cap": self.daily_cap.data, "delivery_start_hour": self.delivery_start_hour.data,
            "delivery_end_hour": self.delivery_end_hour.data, "timezone": self.timezone.data or "UTC",
            "lookback_days": 30 if self.lookback_days.data is None else self.lookback_days.data,
            "name": self.name.data or "", "webhook_url": self.webhook_url.data or None,
        }


class ChangeOrderForm(FlaskForm):
    price = StringField("Price per lead", validators=[DataRequired()])
    quantity = IntegerField("Quantity", validators=[DataRequired(), NumberRange(1, MAX_QUANTITY)])
    daily_cap = IntegerField("Daily cap", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])

    def validate_price(self, field):
        _money(field, required=True)


class WebhookForm(FlaskForm):
    webhook_url = StringField("Webhook URL", description="Leave empty to stop webhooks.")


class AmountField(StringField):
    """Money typed as text ("250.00"), read into `minor_units` without floats."""

    def pre_validate(self, form):
        if not self.data:
            return  # DataRequired says so
        _money(self, required=True)
        if self.minor_units <= 0:
            raise ValidationError("The amount must be above zero.")


class TopUpForm(FlaskForm):
    amount = AmountField("Amount", validators=[DataRequired()], description="e.g. 250.00")
    # The card token Stripe.js created in the browser; card numbers never reach us.
    token = StringField(validators=[DataRequired(message="Enter your card details.")])


class WithdrawForm(FlaskForm):
    amount = AmountField("Amount to withdraw", validators=[DataRequired()])
class OutcomeForm(FlaskForm):
    """What became of one delivered lead."""

    status = SelectField("Outcome", choices=[
        SelectChoice("contacted"), SelectChoice("converted"), SelectChoice("bad")])
    revenue = StringField("Revenue", description="For converted leads: what the customer "
                                                 "brought you (your gross margin).")

    def validate_revenue(self, field):
        _money(field, required=False)


class OutcomesUploadForm(FlaskForm):
    file = FileField("Outcomes CSV", validators=[FileRequired()])
