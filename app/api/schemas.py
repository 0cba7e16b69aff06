"""Marshmallow schemas for the API's input and output."""
from dataclasses import asdict

from marshmallow import Schema, fields, post_dump, validate

from app.core import bounds
from app.services.ingest.pipeline import MAX_CAP
from app.services.ingest.validate import MAX_AGE, MIN_AGE
from app.market import rules
from app.market.filters import MAX_DAYS
from app.market.schedule import MAX_WINDOWS, clock
from app.models.orders import PERIODS
from app.models.types import utcnow
from app.services.scoring import MAX_SCORE


class Int(fields.Integer):
    """A whole number of one kind of `app.core.bounds`, its range stated in the
    OpenAPI document. In JSON only a JSON integer is one (1.5, "100" and true are
    refused, never truncated); in a query string or a form (`TextInput` schemas),
    decimal digits. `config_minimum`/`config_maximum` name the setting that narrows
    the documented range (the minimum price, the top-up limits): the service that
    owns the rule enforces it, with its own error code."""

    def __init__(self, kind: bounds.IntRange, *, minimum: int | None = None,
                 maximum: int | None = None, config_minimum: str | None = None,
                 config_maximum: str | None = None, **kwargs):
        kind = kind.narrowed(minimum, maximum)
        self.config_bounds = {"minimum": config_minimum, "maximum": config_maximum}
        super().__init__(strict=True, validate=validate.Range(kind.minimum, kind.maximum),
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if (isinstance(value, str) and getattr(self.root, "TEXT_INPUT", False)
                and bounds.DECIMAL.fullmatch(value)):
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class TextInput(Schema):
    """Input read from a query string or a form: numbers arrive as text."""

    TEXT_INPUT = True


class ApiErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class ApiErrorSchema(Schema):
    error = fields.Nested(ApiErrorDetailSchema, required=True)


# The 403 of operations that move money or leads (SPEC §2): another role's key, or an
# account whose email address is not verified yet.
NOT_ALLOWED_YET = ("Another role's key (forbidden), or the account's email address is not "
                   "verified yet (email_not_verified)")


class BalanceSchema(Schema):
    currency = fields.String(required=True, metadata={"example": "USD"})
    available = fields.Integer(required=True, metadata={"description": "minor units"})
    held = fields.Integer(required=True, metadata={"description": "minor units"})
    pending = fields.Integer(required=True, metadata={"description": "minor units"})


_FLOOR_PRICE = {"load_default": 0, "metadata": {"description": "minor units"}}
_CAP = {"minimum": 1, "maximum": MAX_CAP, "load_default": 1,
        "metadata": {"description": "buyers per lead; 1 = exclusive"}}


class BatchUploadSchema(TextInput):
    default_country = fields.String(required=True, metadata={"example": "RU"})
    floor_price = Int(bounds.AMOUNT, **_FLOOR_PRICE)
    cap = Int(bounds.COUNT, **_CAP)
    mapping = fields.String(load_default="", metadata={
        "description": 'JSON object of header → field, e.g. {"Tel. 2": "phone", "Notes": ""}'})
    allow_duplicate = fields.Boolean(load_default=False, metadata={
        "description": "create a batch even if the same file was uploaded before"})
    confirm_floor = fields.Boolean(load_default=False, metadata={
        "description": "keep a floor price far above recent prices (refused with 409 "
                       "floor_needs_confirmation otherwise)"})


class BatchFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class BatchChangeSchema(Schema):
    """New terms for a batch's unsold leads; the next sale is made under them."""

    floor_price = Int(bounds.AMOUNT, metadata={"description": "minor units"})
    cap = Int(bounds.COUNT, minimum=1, maximum=MAX_CAP, metadata={
        "description": "buyers per lead; a lead already sold keeps at least the buyers it "
                       "has and is never raised above the cap it sold under"})
    confirm = fields.Boolean(load_default=False, metadata={
        "description": "save a floor far above what such leads sold for lately (refused "
                       "with 409 floor_needs_confirmation otherwise)"})


class BatchErrorSchema(Schema):
    code = fields.String()
    message = fields.String()


class BatchSchema(Schema):
    id = fields.Integer()
    status = fields.Function(lambda b: b.status.value)
    source = fields.Function(lambda b: b.source.value)
    filename = fields.String()
    rows_total = fields.Integer()
    accepted = fields.Integer()
    rejected = fields.Integer()
    cross_seller_duplicates = fields.Integer()
    progress = fields.Float(metadata={"description": "0.0–1.0"})
    default_country = fields.String()
    floor_price = fields.Integer()
    cap = fields.Integer()
    file_format = fields.String(metadata={"description": "csv or xlsx"})
    encoding = fields.String(allow_none=True, metadata={"description": "a CSV's"})
    delimiter = fields.String(allow_none=True, metadata={"description": "a CSV's"})
    unmapped_headers = fields.Function(lambda b: list(b.mapping.get("unmapped") or []))
    rejection_counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    sources = fields.Function(
        lambda b: [{"sub_id": f.sub_id, "accepted": f.accepted, "sold": f.sold,
                    "revenue": f.revenue, "min_price": f.min_price, "max_price": f.max_price,
                    "returned": f.returned, "converted": f.converted}
                   for f in getattr(b, "sources", [])],
        metadata={"description": "GET /batches/{id}: per sub_id, leads accepted, sales, "
                                 "revenue and prices (minor units), returns, conversions"})
    error = fields.Function(
        lambda b: {"code": b.error_code, "message": b.error_message} if b.error_code else None)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    listing = fields.Function(
        lambda b: asdict(b.listing) if getattr(b, "listing", None) else None, metadata={
            "description": "GET /batches/{id}: leads a buyer may still take, by status (live, "
                           "held, paused, withdrawn, delisted), and sold_out: those with "
                           "every buyer their cap allows"})
    # Admins only (SPEC §11): dropped from the body unless the batch is marked admin_view.
    risk_score = fields.Integer(allow_none=True, metadata={"description": "admins only: 0-100"})
    signals = fields.Function(lambda b: b.risk_signals, metadata={
        "description": "admins only: [{code, title, value, count, of, points, sentence}]"})
    spot_check = fields.Function(lambda b: getattr(b, "spot_check_status", None),
                                 metadata={"description": "admins only"})

    @post_dump(pass_original=True)
    def hide_admin_fields(self, data, original, **kwargs):
        if not getattr(original, "admin_view", False):
            for name in ("risk_score", "signals", "spot_check"):
                data.pop(name, None)
        return data


class AdminBatchQuerySchema(TextInput):
    sort = fields.String(load_default="risk", validate=validate.OneOf(["risk", "newest"]))
    status = fields.String(load_default=None, validate=validate.OneOf(
        ["processing", "held", "live", "rejected", "failed"]))
    limit = Int(bounds.PAGE_SIZE, maximum=500, load_default=50)
    offset = Int(bounds.OFFSET, load_default=0)


class LeadInputSchema(Schema):
    """One lead in real time: the SPEC §3 fields plus the terms."""

    first_name = fields.String()
    last_name = fields.String()
    email = fields.String()
    phone = fields.String()
    age = fields.Raw()
    birth_date = fields.String()
    gender = fields.String()
    region = fields.String()
    country = fields.String()
    marital_status = fields.String()
    employed = fields.Raw()
    interests = fields.Raw(metadata={"description": "a list, or a string split on ; , |"})
    budget = fields.String()
    authority = fields.String()
    need = fields.String()
    timeframe = fields.String()
    consent_at = fields.String(metadata={"description": (
        "needed (a lead without it is refused no_consent): when the person agreed, ISO 8601; "
        "without an offset it is read on the person's own clock (their region's zone), a "
        "date alone as midnight UTC")})
    source_url = fields.String(metadata={"description": (
        "needed (a lead without it is refused no_consent): the page where they agreed")})
    consent_text = fields.String()
    consent = fields.Raw(metadata={"description": "whether the person agreed: true/false, "
                                                  "yes/no, 1/0; a no is rejected no_consent"})
    ip = fields.String()
    sub_id = fields.String(metadata={"description": "your own source, campaign or page"})
    city = fields.String()
    postal_code = fields.String()
    trustedform_cert_url = fields.String(
        metadata={"description": "https://cert.trustedform.com/ and 40 hex characters"})
    jornaya_leadid = fields.String(metadata={"description": "a UUID"})
    default_country = fields.String(load_default=None, metadata={
        "example": "DE", "description": "ISO alpha-2: how a phone number without its +country "
        "prefix is read. Left out: the lead's country, else its region's (or city's), "
        "else its phone's +prefix"})
    floor_price = Int(bounds.AMOUNT, **_FLOOR_PRICE)
    cap = Int(bounds.COUNT, **_CAP)


class LeadSaleSchema(Schema):
    sale_id = fields.Integer()
    price = fields.Integer(metadata={"description": "minor units paid by the buyer"})
    seller_share = fields.Integer(metadata={"description": "minor units credited to you"})


class LeadCreatedSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={
        "description": "live (offered to buyers), held (until its batch passes a "
                       "spot-check), or sold_out: sold to as many buyers as its cap allows"})
    sold = fields.Integer(metadata={"description": "buyers it was sold to (its sales)"})
    cap = fields.Integer(metadata={"description": "buyers it may be sold to at most"})
    cross_seller_duplicate = fields.Boolean()
    sales = fields.List(fields.Nested(LeadSaleSchema))


class FiltersSchema(Schema):
    age_min = Int(bounds.COUNT, minimum=MIN_AGE, maximum=MAX_AGE, allow_none=True)
    age_max = Int(bounds.COUNT, minimum=MIN_AGE, maximum=MAX_AGE, allow_none=True)
    genders = fields.List(fields.String(), metadata={"example": ["f"]})
    regions = fields.List(fields.String(), metadata={"example": ["RU-MOW", "US-CA"]})
    countries = fields.List(fields.String(), metadata={"example": ["US"]})
    require = fields.String(allow_none=True, metadata={"description": "phone, email or both"})
    marital_statuses = fields.List(fields.String())
    employed = fields.String(allow_none=True, metadata={"description": "yes, no or unknown"})
    interests = fields.List(fields.String(), metadata={"description": "any of"})
    max_age_days = Int(bounds.COUNT, minimum=1, maximum=MAX_DAYS, allow_none=True,
                       metadata={"description": "freshness"})
    exclusive_only = fields.Boolean()
    min_score = Int(bounds.COUNT, maximum=MAX_SCORE, allow_none=True, metadata={
        "description": "0–100: the lead's score when it is sold (SPEC §6)"})
    min_temperature = fields.String(allow_none=True, metadata={
        "description": "hot (score ≥ 70), warm (≥ 40) or cold (any)"})


def _caps_schema(kind: bounds.IntRange, unit: str) -> type[Schema]:
    return Schema.from_dict({p: Int(kind, minimum=1, allow_none=True, metadata={
        "description": f"{unit} per {p} in the order's time zone; null: no cap"})
        for p in PERIODS}, name=f"{unit.capitalize()}CapsSchema")


CapsSchema = _caps_schema(bounds.COUNT, "leads")
SpendCapsSchema = _caps_schema(bounds.AMOUNT, "minor units")


class WindowSchema(Schema):
    days = fields.List(fields.String(), required=True,
                       metadata={"example": ["mon", "tue", "wed", "thu", "fri"]})
    start = fields.String(required=True, metadata={"example": "09:00"})
    end = fields.String(required=True, metadata={
        "example": "17:00", "description": "at or before start: runs past midnight"})
    price = Int(bounds.AMOUNT, allow_none=True, load_default=None, metadata={
        "description": "minor units per lead while the window is open; null: the order's price"})


def _schedule_field(description: str, **kwargs):
    return fields.List(fields.Nested(WindowSchema), allow_none=True,
                       validate=validate.Length(max=MAX_WINDOWS),
                       metadata={"description": description}, **kwargs)


_CALLING = {"description": "SPEC §14 quiet hours: hold phone leads until the person's local "
            "calling hours -- {start, end} like 08:00 and 21:00 on the person's clock, true "
            "for 08:00–21:00, null: not held", "example": {"start": "08:00", "end": "21:00"}}
_BID_URL = ("live bids (ping/post): each real-time lead this order may take is offered here "
            "first, as a POST of its attributes signed like the webhook; a reply {\"bid\": N} "
            "with N <= max_bid buys it at N if that is the best offer")


class OrderCreateSchema(Schema):
    name = fields.String(load_default="")
    filters = fields.Nested(FiltersSchema, load_default=dict)
    price = Int(bounds.AMOUNT, config_minimum="MIN_PRICE", required=True,
                metadata={"description": "minor units per lead"})
    quantity = Int(bounds.COUNT, minimum=1, required=True)
    budget = Int(bounds.AMOUNT, minimum=1, allow_none=True, load_default=None)
    expires_at = fields.AwareDateTime(allow_none=True, load_default=None)
    caps = fields.Nested(CapsSchema, allow_none=True, load_default=None)
    spend_caps = fields.Nested(SpendCapsSchema, allow_none=True, load_default=None)
    schedule = _schedule_field("weekly delivery windows in the order's time zone (none: "
                               "always open); they may not overlap", load_default=None)
    timezone = fields.String(load_default=None, metadata={
        "description": "IANA name; default: the buyer's"})
    lookback_days = Int(bounds.COUNT, maximum=MAX_DAYS, load_default=30, metadata={
        "description": "never the same person twice within this many days"})
    webhook_url = fields.String(allow_none=True, load_default=None)
    calling_hours = fields.Raw(allow_none=True, load_default=None, metadata=_CALLING)
    bid_url = fields.String(allow_none=True, load_default=None, metadata={
        "description": _BID_URL})
    max_bid = Int(bounds.AMOUNT, allow_none=True, load_default=None, metadata={
        "description": "the most the order bids, minor units; required with bid_url"})


class OrderChangeSchema(Schema):
    price = Int(bounds.AMOUNT, config_minimum="MIN_PRICE")
    quantity = Int(bounds.COUNT, minimum=1)
    caps = fields.Nested(CapsSchema, allow_none=True, metadata={
        "description": "the periods given replace theirs (null removes one); null: no caps"})
    spend_caps = fields.Nested(SpendCapsSchema, allow_none=True)
    schedule = _schedule_field("replaces the schedule; null: always open")
    timezone = fields.String()
    calling_hours = fields.Raw(allow_none=True, metadata=_CALLING)
    bid_url = fields.String(allow_none=True, metadata={"description": "null: no live bids"})
    max_bid = Int(bounds.AMOUNT, allow_none=True)


def _caps_of(order, prefix: str) -> dict:
    return {p: getattr(order, f"{prefix}_{p}") for p in PERIODS
            if getattr(order, f"{prefix}_{p}") is not None}


class CapUseSchema(Schema):
    period = fields.String(metadata={"description": "hour, day, week or month"})
    kind = fields.String(metadata={"description": "leads or spend (minor units)"})
    cap = fields.Integer()
    used = fields.Integer(metadata={"description": "in the current period"})
    room = fields.Integer(metadata={"description": "leads it still lets through this period"})
    period_key = fields.String(metadata={"example": "2026-12-04"})


class OrderSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.Function(lambda o: o.status.value)
    price = fields.Integer()
    quantity = fields.Integer()
    filled = fields.Integer()
    spent = fields.Integer()
    held = fields.Integer(metadata={"description": "money still held for this order"})
    budget = fields.Integer(allow_none=True)
    filters = fields.Dict()
    expires_at = fields.DateTime(allow_none=True)
    caps = fields.Function(lambda o: _caps_of(o, "cap"))
    spend_caps = fields.Function(lambda o: _caps_of(o, "spend_cap"))
    schedule = fields.List(fields.Nested(WindowSchema), allow_none=True)
    price_now = fields.Function(lambda o: rules.price_in_effect(o, utcnow()), allow_none=True,
                                metadata={"description": "what a lead arriving now costs; "
                                                         "null: outside every window"})
    cap_use = fields.Function(lambda o: CapUseSchema(many=True).dump(rules.cap_use(o, utcnow())),
                              metadata={"description": "each cap's use in its current period"})
    timezone = fields.String()
    calling_hours = fields.Function(
        lambda o: None if o.calling_from is None else {
            "start": clock(o.calling_from), "end": clock(o.calling_until)},
        allow_none=True, metadata={"description": "phone leads held until the person's "
                                   "local time is inside these hours; null: not held"})
    lookback_days = fields.Integer()
    webhook_url = fields.String(allow_none=True)
    webhook_secret = fields.String(metadata={"description": "only in the response that set it"})
    bid_url = fields.String(allow_none=True)
    max_bid = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class DeliveredLeadSchema(Schema):
    sale_id = fields.Integer()
    order_id = fields.Integer()
    price = fields.Integer()
    currency = fields.String()
    sold_at = fields.String()
    lead = fields.Dict(metadata={"description": "contacts, demographics, intent, consent "
                                                "(with consent_certificate_url for a hosted "
                                                "form's lead), score and temperature (as of "
                                                "the sale)"})
    outcome = fields.Dict(allow_none=True, metadata={
        "description": "what you recorded: status (contacted, converted, bad), revenue"})


class PageSchema(TextInput):
    limit = Int(bounds.PAGE_SIZE, load_default=500)
    offset = Int(bounds.OFFSET, load_default=0)
    format = fields.String(load_default="json", metadata={"description": "json or csv"})


class EstimateSchema(Schema):
    matching = fields.Integer(metadata={"description": "live leads that match right now"})
    clearing_prices = fields.Dict(metadata={
        "description": "count, min, median, max of similar sales in the last 30 days"})


class EstimateQuerySchema(FiltersSchema, TextInput):
    price = Int(bounds.AMOUNT, allow_none=True)
