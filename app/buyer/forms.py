from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField, DateTimeLocalField, FieldList, Form, FormField, IntegerField, RadioField,
    SelectField, SelectMultipleField, StringField, TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.formatting import parse_money
from app.forms import MoneyField
from app.labels import choices
from app.market.filters import EMPLOYED, GENDERS, MARITAL_STATUSES, MAX_QUANTITY, REQUIRE
from app.market.schedule import DAYS, clock
from app.models.orders import PERIODS


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").replace(";", ",").split(",") if part.strip()]


class FilterFields:
    """The filters of the order builder, shared by the order form and the estimate."""

    age_min = IntegerField("Age from", validators=[Optional(), NumberRange(18, 100)])
    age_max = IntegerField("Age to", validators=[Optional(), NumberRange(18, 100)])
    genders = CheckboxesField("Gender", choices=choices("gender", GENDERS))
    regions = StringField("Regions", description="Names or ISO codes, comma-separated: "
                                                 "Москва, Kaliningrad, ES-M")
    countries = StringField("Countries", description="Names or two-letter codes: Spain, US")
    require = SelectField("Contacts required", default="", choices=[
        SelectChoice("", "Email or phone"), *choices("require", REQUIRE)])
    marital_statuses = CheckboxesField("Marital status",
                                       choices=choices("marital_status", MARITAL_STATUSES))
    employed = SelectField("Employed", default="", choices=[
        SelectChoice("", "Any"), *choices("employed", EMPLOYED)])
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


class WindowForm(Form):
    """One delivery window of the schedule (a row of the builder; an empty row is none)."""

    days = CheckboxesField("Days", choices=[SelectChoice(d, d.capitalize()) for d in DAYS])
    start = StringField("From", render_kw={"type": "time"})
    end = StringField("Until", render_kw={"type": "time"},
                      description="At or before From: runs past midnight.")
    price = MoneyField("Price in this window (optional)")

    def is_empty(self) -> bool:
        return not (self.days.data or self.start.data or self.end.data or self.price.data)

    def as_window(self) -> dict:
        end = "24:00" if self.end.data == "00:00" else self.end.data  # midnight, at the end
        try:  # read here too: the live estimate reads rows it has not validated
            price = parse_money(self.price.data) if self.price.data else None
        except ValueError:
            price = None  # the field shows its own error
        return {"days": self.days.data or [], "start": self.start.data, "end": end,
                "price": price}


class TermsFields:
    """Caps per period, the weekly schedule and its time zone: the order builder's and
    the order page's, read into `operations.check_terms`/`change_terms` arguments."""

    timezone = StringField("Time zone", default="UTC",
                           description="Caps and windows count in it, e.g. Europe/Madrid.")
    cap_hour = IntegerField("Leads per hour", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])
    cap_day = IntegerField("per day", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])
    cap_week = IntegerField("per week", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])
    cap_month = IntegerField("per month", validators=[Optional(), NumberRange(1, MAX_QUANTITY)])
    spend_cap_hour = MoneyField("Spend per hour")
    spend_cap_day = MoneyField("per day")
    spend_cap_week = MoneyField("per week")
    spend_cap_month = MoneyField("per month")
    schedule = FieldList(FormField(WindowForm), min_entries=3, max_entries=12)
    calling_hours = BooleanField("Hold phone leads until the person's calling hours")
    calling_start = StringField("From", default="08:00", render_kw={"type": "time"})
    calling_end = StringField("Until", default="21:00", render_kw={"type": "time"},
                              description="On the person's own clock (their region's time zone).")

    def calling(self) -> dict | None:
        return ({"start": self.calling_start.data or None, "end": self.calling_end.data or None}
                if self.calling_hours.data else None)

    def caps(self) -> dict:
        return {p: getattr(self, f"cap_{p}").data for p in PERIODS}

    def spend_caps(self) -> dict:
        return {p: getattr(self, f"spend_cap_{p}").minor_units for p in PERIODS}

    def windows(self) -> list[dict]:
        return [entry.form.as_window() for entry in self.schedule
                if not entry.form.is_empty()]

    def terms_changes(self) -> dict:
        return {"caps": self.caps(), "spend_caps": self.spend_caps(),
                "schedule": self.windows(), "timezone": self.timezone.data or "UTC",
                "calling_hours": self.calling()}

    def estimate_terms(self) -> dict:
        return {"schedule": self.windows() or None, "timezone": self.timezone.data or "UTC"}

    def field_named(self, name: str):
        """The field a refusal names (`caps.hour` is `cap_hour`), or None."""
        name = (name.replace("spend_caps.", "spend_cap_").replace("calling_hours.", "calling_")
                .replace("caps.", "cap_"))
        return getattr(self, name, None)

    def load_terms(self, order) -> None:
        """Show an order's current caps, schedule and zone."""
        self.timezone.data = order.timezone
        self.calling_hours.data = order.calling_from is not None
        if order.calling_from is not None:
            self.calling_start.data = clock(order.calling_from)
            self.calling_end.data = clock(order.calling_until)
        for p in PERIODS:
            getattr(self, f"cap_{p}").data = getattr(order, f"cap_{p}")
            spend = getattr(order, f"spend_cap_{p}")
            getattr(self, f"spend_cap_{p}").process_data(spend)
        windows = order.schedule or []
        while len(self.schedule) < len(windows) + 1:
            self.schedule.append_entry()
        for entry, window in zip(self.schedule, windows):
            entry.form.days.data, entry.form.start.data = window["days"], window["start"]
            # A time input has no 24:00; midnight at the end reads back as 24:00.
            entry.form.end.data = "00:00" if window["end"] == "24:00" else window["end"]
            entry.form.price.process_data(window.get("price"))


class OrderFiltersForm(FilterFields, TermsFields, FlaskForm):
    """The live estimate's request: reads the builder's filters and schedule, changes nothing."""

    # Caps and calling hours change no estimate: fields not built on every change.
    cap_hour = cap_day = cap_week = cap_month = None
    spend_cap_hour = spend_cap_day = spend_cap_week = spend_cap_month = None
    calling_hours = calling_start = calling_end = None

    class Meta:
        csrf = False


class BidFields:
    """Live bids (SPEC §4 rule 9): where real-time leads are offered for a bid, and
    the most the order bids."""

    bid_url = StringField("Bid URL (optional)", description="Real-time leads this order may "
                          "take are offered here first, without contacts; your system answers "
                          '{"bid": N}, N in cents, within the ping deadline, to buy at that '
                          "price.")
    max_bid = MoneyField("Highest bid", description="Bids above this are ignored; the money "
                         "held for the order covers it.")

    def bid_terms(self) -> dict:
        url = (self.bid_url.data or "").strip() or None
        return {"bid_url": url, "max_bid": self.max_bid.minor_units if url else None}

    def load_bids(self, order) -> None:
        self.bid_url.data = order.bid_url
        self.max_bid.process_data(order.max_bid)


def _quantity() -> list:
    # InputRequired, not DataRequired: 0 was given, and is refused as too few.
    return [InputRequired(), NumberRange(1, MAX_QUANTITY, message="The quantity is a whole "
                                         f"number of leads from 1 to {MAX_QUANTITY:,}.")]


class OrderForm(FilterFields, TermsFields, BidFields, FlaskForm):
    name = StringField("Order name", description="For your own reference, e.g. the campaign.")
    price = MoneyField("Price per lead", validators=[DataRequired()], default=500)
    quantity = IntegerField("Quantity", validators=_quantity(), default=100)
    budget = MoneyField("Total budget (optional)")
    expires_at = DateTimeLocalField("Expires (optional)", validators=[Optional()])
    lookback_days = IntegerField("Never the same person twice within (days)", default=30,
                                 validators=[Optional(), NumberRange(0, 3650)])
    webhook_url = StringField("Webhook URL (optional)",
                              description="We POST each lead here the moment it is sold.")

    def terms_kwargs(self) -> dict:
        expires = self.expires_at.data
        if expires is not None:
            try:
                expires = expires.replace(tzinfo=ZoneInfo(self.timezone.data or "UTC"))
            except (KeyError, ValueError):
                expires = expires.replace(tzinfo=ZoneInfo("UTC"))
        return {
            "budget": self.budget.minor_units, "expires_at": expires, **self.terms_changes(),
            "lookback_days": 30 if self.lookback_days.data is None else self.lookback_days.data,
            "name": self.name.data or "", "webhook_url": self.webhook_url.data or None,
            **self.bid_terms(),
        }


class ChangeOrderForm(TermsFields, BidFields, FlaskForm):
    price = MoneyField("Price per lead", validators=[DataRequired()])
    quantity = IntegerField("Quantity", validators=_quantity())


class WebhookForm(FlaskForm):
    webhook_url = StringField("Delivery URL", description="Where each lead is POSTed the moment "
                              "it is sold. Leave empty to stop deliveries.")


class TopUpForm(FlaskForm):
    amount = MoneyField("Amount", validators=[DataRequired()], positive=True,
                        description="e.g. 250.00")
    # The card token Stripe.js created in the browser; card numbers never reach us.
    token = StringField(validators=[DataRequired(message="Enter your card details.")])


class WithdrawForm(FlaskForm):
    amount = MoneyField("Amount to withdraw", validators=[DataRequired()], positive=True)


class AutoTopUpForm(FlaskForm):
    # May be zero: top up only when the balance is empty.
    threshold = MoneyField("When my balance falls below", validators=[DataRequired()],
                           description="e.g. 100.00")
    amount = MoneyField("Add", validators=[DataRequired()], positive=True,
                        description="e.g. 500.00")
    # The SetupIntent Stripe.js confirmed with the card in the browser (new card only).
    setup_intent_id = StringField()
    enabled = BooleanField("Automatic top-up on", default=True)


class OutcomesUploadForm(FlaskForm):
    file = FileField("Outcomes CSV", validators=[FileRequired()])


class DeliveryFormatForm(FlaskForm):
    """How an order's leads are delivered (app.aftersale.delivery.settings)."""
    method = RadioField("Deliver as", default="webhook", choices=[
        SelectChoice("webhook", "Our signed JSON (webhook)"),
        SelectChoice("http", "HTTP POST in your format")])
    body_format = SelectField("Body", default="json", choices=[
        SelectChoice("json", "JSON"), SelectChoice("form", "Form-encoded"),
        SelectChoice("xml", "XML")])
    mapping = TextAreaField(
        "Fields", render_kw={"rows": 8, "spellcheck": "false"},
        description='One per line: your field = our field, a "constant", or a transform: '
                    'first(full_name), last(full_name), digits(phone), no_plus(phone), '
                    'upper(…), lower(…), date(consent_at, "%d/%m/%Y"). '
                    'A dotted name (a.b) nests in JSON and XML.')
    headers = TextAreaField(
        "Headers (optional)", render_kw={"rows": 2, "spellcheck": "false"},
        description="One per line, Name: value. Values are stored encrypted and shown masked; "
                    "leave a masked value as it is to keep it.")
    reply_kind = SelectField("Accepted when", default="status", choices=[
        SelectChoice("status", "the reply is HTTP 2xx"),
        SelectChoice("json", "2xx, and a JSON path has the value below"),
        SelectChoice("xpath", "2xx, and an XPath has the value below"),
        SelectChoice("regex", "2xx, and a pattern matches")])
    reply_path = StringField("Path or pattern", description="e.g. $.status, /response/result, "
                             "or a regular expression.")
    reply_accept = StringField("Value meaning accepted",
                               description="Empty: any value there means accepted.")
    reply_reason = StringField("Reason path or pattern (optional)",
                               description="Where the reply gives its reason, e.g. $.message; "
                                           "a pattern's first group.")


class EmailDeliveryForm(FlaskForm):
    """Leads by email as well (app.aftersale.delivery.settings.use_email)."""
    enabled = BooleanField("Also send the leads by email")
    addresses = TextAreaField(
        "Addresses", render_kw={"rows": 2, "spellcheck": "false", "autocomplete": "email"},
        description="One or more, separated by commas or new lines (at most 10).")
    mode = RadioField("Send", default="lead", choices=[
        SelectChoice("lead", "One message per lead, the moment it is sold"),
        SelectChoice("digest", "A digest of the leads sold")])
    digest = SelectField("Digest every", default="daily", choices=[
        SelectChoice("hourly", "hour"), SelectChoice("daily", "day")],
        description="Hours and days of the order's time zone.")
