"""Marshmallow schemas for the API's input and output."""
from marshmallow import Schema, fields, post_dump, validate


class ApiErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class ApiErrorSchema(Schema):
    error = fields.Nested(ApiErrorDetailSchema, required=True)


class BalanceSchema(Schema):
    currency = fields.String(required=True, metadata={"example": "USD"})
    available = fields.Integer(required=True, metadata={"description": "minor units"})
    held = fields.Integer(required=True, metadata={"description": "minor units"})
    pending = fields.Integer(required=True, metadata={"description": "minor units"})


class BatchUploadSchema(Schema):
    default_country = fields.String(required=True, metadata={"example": "RU"})
    floor_price = fields.Integer(load_default=0, metadata={"description": "minor units"})
    cap = fields.Integer(load_default=1, metadata={"description": "1 = exclusive"})
    mapping = fields.String(load_default="", metadata={
        "description": 'JSON object of header → field, e.g. {"Tel. 2": "phone", "Notes": ""}'})
    allow_duplicate = fields.Boolean(load_default=False, metadata={
        "description": "create a batch even if the same file was uploaded before"})


class BatchFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


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
    encoding = fields.String(allow_none=True)
    delimiter = fields.String(allow_none=True)
    unmapped_headers = fields.Function(lambda b: list(b.mapping.get("unmapped") or []))
    rejection_counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    error = fields.Function(
        lambda b: {"code": b.error_code, "message": b.error_message} if b.error_code else None)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
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


class AdminBatchQuerySchema(Schema):
    sort = fields.String(load_default="risk", validate=validate.OneOf(["risk", "newest"]))
    status = fields.String(load_default=None, validate=validate.OneOf(
        ["processing", "held", "live", "rejected", "failed"]))
    limit = fields.Integer(load_default=50)
    offset = fields.Integer(load_default=0)


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
    consent_at = fields.String(metadata={"description": "ISO 8601 timestamp"})
    source_url = fields.String()
    consent_text = fields.String()
    ip = fields.String()
    default_country = fields.String(required=True)
    floor_price = fields.Integer(load_default=0)
    cap = fields.Integer(load_default=1)


class LeadSaleSchema(Schema):
    sale_id = fields.Integer()
    price = fields.Integer(metadata={"description": "minor units paid by the buyer"})
    seller_share = fields.Integer(metadata={"description": "minor units credited to you"})


class LeadCreatedSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    cross_seller_duplicate = fields.Boolean()
    sales = fields.List(fields.Nested(LeadSaleSchema))


class FiltersSchema(Schema):
    age_min = fields.Integer(allow_none=True)
    age_max = fields.Integer(allow_none=True)
    genders = fields.List(fields.String(), metadata={"example": ["f"]})
    regions = fields.List(fields.String(), metadata={"example": ["RU-MOW", "US-CA"]})
    countries = fields.List(fields.String(), metadata={"example": ["US"]})
    require = fields.String(allow_none=True, metadata={"description": "phone, email or both"})
    marital_statuses = fields.List(fields.String())
    employed = fields.String(allow_none=True, metadata={"description": "yes, no or unknown"})
    interests = fields.List(fields.String(), metadata={"description": "any of"})
    max_age_days = fields.Integer(allow_none=True, metadata={"description": "freshness"})
    exclusive_only = fields.Boolean()
    min_score = fields.Integer(allow_none=True, metadata={
        "description": "0–100: the lead's score when it is sold (SPEC §6)"})
    min_temperature = fields.String(allow_none=True, metadata={
        "description": "hot (score ≥ 70), warm (≥ 40) or cold (any)"})


class OrderCreateSchema(Schema):
    name = fields.String(load_default="")
    filters = fields.Nested(FiltersSchema, load_default=dict)
    price = fields.Integer(required=True, metadata={"description": "minor units per lead"})
    quantity = fields.Integer(required=True)
    budget = fields.Integer(allow_none=True, load_default=None)
    expires_at = fields.AwareDateTime(allow_none=True, load_default=None)
    daily_cap = fields.Integer(allow_none=True, load_default=None)
    delivery_start_hour = fields.Integer(allow_none=True, load_default=None)
    delivery_end_hour = fields.Integer(allow_none=True, load_default=None)
    timezone = fields.String(load_default="UTC")
    lookback_days = fields.Integer(load_default=30, metadata={
        "description": "never the same person twice within this many days"})
    webhook_url = fields.String(allow_none=True, load_default=None)


class OrderChangeSchema(Schema):
    price = fields.Integer()
    quantity = fields.Integer()
    daily_cap = fields.Integer(allow_none=True)


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
    daily_cap = fields.Integer(allow_none=True)
    delivery_start_hour = fields.Integer(allow_none=True)
    delivery_end_hour = fields.Integer(allow_none=True)
    timezone = fields.String()
    lookback_days = fields.Integer()
    webhook_url = fields.String(allow_none=True)
    webhook_secret = fields.String(metadata={"description": "only in the response that set it"})
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class DeliveredLeadSchema(Schema):
    sale_id = fields.Integer()
    order_id = fields.Integer()
    price = fields.Integer()
    currency = fields.String()
    sold_at = fields.String()
    lead = fields.Dict(metadata={"description": "contacts, demographics, intent, consent, "
                                                "score and temperature (as of the sale)"})
    outcome = fields.Dict(allow_none=True, metadata={
        "description": "what you recorded: status (contacted, converted, bad), revenue"})


class PageSchema(Schema):
    limit = fields.Integer(load_default=500)
    offset = fields.Integer(load_default=0)
    format = fields.String(load_default="json", metadata={"description": "json or csv"})


class EstimateSchema(Schema):
    matching = fields.Integer(metadata={"description": "live leads that match right now"})
    clearing_prices = fields.Dict(metadata={
        "description": "count, min, median, max of similar sales in the last 30 days"})


class EstimateQuerySchema(FiltersSchema):
    price = fields.Integer(allow_none=True)
