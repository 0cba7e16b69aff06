"""Pure logic: the words people read for every stored code -- a lead's demographics,
the states of orders, batches, returns, outcomes, payments and deliveries, the lead
fields of an upload. Templates say `value|label("gender")`; forms take their choices
from `choices("gender")`. The codes themselves stay as SPEC §3 and the API define them.
"""
from enum import Enum

from wtforms.fields.choices import SelectChoice

LABELS: dict[str, dict[str, str]] = {
    "gender": {"f": "Female", "m": "Male", "other": "Other", "unknown": "Not given"},
    "marital_status": {
        "single": "Single", "partnered": "In a relationship", "married": "Married",
        "divorced": "Divorced", "widowed": "Widowed", "unknown": "Not given"},
    "employed": {"yes": "Employed", "no": "Not employed", "unknown": "Not given"},
    "require": {"phone": "Phone", "email": "Email", "both": "Phone and email"},
    "outcome": {"contacted": "Contacted", "converted": "Converted", "bad": "Bad lead"},
    "return": {"awaiting_seller": "Awaiting the seller", "contested": "Contested",
               "accepted": "Accepted", "rejected": "Rejected"},
    "order": {"open": "Open", "paused": "Paused", "filled": "Filled",
              "cancelled": "Cancelled", "expired": "Expired"},
    "batch": {"processing": "Processing", "held": "Held for a spot-check", "live": "Live",
              "rejected": "Rejected", "failed": "Failed"},
    # A lead as its seller is told (app.market.rules.offer_status).
    "lead": {"held": "Held for a spot-check", "live": "Live", "paused": "Paused",
             "withdrawn": "Withdrawn", "delisted": "Delisted", "sold_out": "Sold out"},
    "spot_check": {"open": "Open", "passed": "Passed", "failed": "Failed"},
    "trust": {"new": "New", "verified": "Verified", "suspended": "Suspended"},
    "role": {"seller": "Seller", "buyer": "Buyer", "admin": "Admin"},
    "company_role": {"owner": "Owner", "member": "Member"},
    # What an audit entry is about (the rest read as their words capitalised).
    "subject": {"api_key": "API key", "outgoing_email": "Email", "topup": "Top-up"},
    "delivery": {"pending": "Pending", "delivered": "Delivered", "failed": "Failed",
                 "rejected": "Rejected by your system"},
    "topup": {"created": "Not started", "requires_payment_method": "Waiting for a card",
              "requires_action": "Waiting for 3-D Secure",
              "processing": "Waiting for Stripe to confirm", "succeeded": "Credited",
              "failed": "Failed", "canceled": "Cancelled"},
    "payout": {"pending": "Pending", "paid": "Paid", "failed": "Failed"},
    "refund": {"pending": "Pending", "succeeded": "Refunded", "failed": "Failed"},
    # A user's ledger accounts, and what each kind of ledger transaction is called.
    "account": {
        "buyer_available": "Available", "buyer_held": "Held for orders",
        "seller_pending": "Pending (inside the return window)",
        "seller_available": "Available for payout", "seller_receivable": "Owed for returned sales",
    },
    "movement": {
        "topup": "Card top-up", "bank_transfer": "Bank transfer received",
        "manual_credit": "Credit by the exchange", "manual_debit": "Debit by the exchange",
        "withdrawal": "Withdrawal to card", "withdrawal_reversal": "Withdrawal refused, money back",
        "order_hold": "Held for an order", "order_hold_change": "Hold changed with the order",
        "order_release": "Hold released", "sale": "Sale of leads",
        "sale_reversal": "Returned sale reversed", "earnings_release": "Earnings cleared",
        "debt_recovery": "Returned sales recovered", "payout": "Payout (Stripe)",
        "payout_reversal": "Payout refused, money back", "manual_payout": "Payout by bank transfer",
    },
    # The lead fields of SPEC §3, as the upload's column mapping offers them.
    "field": {
        "first_name": "First name", "last_name": "Last name", "email": "Email",
        "phone": "Phone", "age": "Age", "birth_date": "Date of birth", "gender": "Gender",
        "region": "Region", "country": "Country", "marital_status": "Marital status",
        "employed": "Employed", "interests": "Interests", "budget": "Budget",
        "authority": "Decision maker (authority)", "need": "Need", "timeframe": "Timeframe",
        "consent_at": "Consent date and time", "source_url": "Source page (URL)",
        "consent_text": "Consent text", "consent": "Consent given (yes/no)",
        "ip": "IP address", "sub_id": "Sub ID (your source or campaign)", "city": "City",
        "postal_code": "Postal code", "trustedform_cert_url": "TrustedForm certificate URL",
        "jornaya_leadid": "Jornaya LeadiD",
    },
    # Why a row was rejected, in a few words (each row's own sentence says more):
    # app.services.ingest.validate.VERDICTS has the same codes.
    "rejection": {
        "bad_encoding": "Characters we could not read", "no_contact": "No email or phone",
        "invalid_email": "Email address not valid", "invalid_phone": "Phone number not valid",
        "no_consent": "No consent", "unclear_consent": "Consent neither yes nor no",
        "consent_in_future": "Consent time in the future",
        "implausible_age": "Age outside 18 to 100", "unknown_region": "Region not recognised",
        "invalid_postal_code": "Postal code not valid",
        "invalid_certificate": "Consent certificate not valid",
        "duplicate_in_batch": "Repeats an earlier row of this file",
        "duplicate_own": "Already in one of your batches",
        "suppressed": "On the suppression list",
    },
    # What an audit log entry records (app.services.audit), as the logs name it.
    "audit": {
        "order.placed": "Order placed", "order.changed": "Order terms changed",
        "order.paused": "Order paused", "order.resumed": "Order resumed",
        "order.cancelled": "Order cancelled",
        "order.webhook_changed": "Delivery URL changed",
        "order.delivery_format_changed": "Delivery format changed",
        "order.email_delivery_changed": "Email delivery set",
        "order.email_delivery_stopped": "Email delivery stopped",
        "topup.started": "Card top-up started", "balance.withdrawn": "Withdrawal to card",
        "autotopup.card_saved": "Card saved for automatic top-ups",
        "autotopup.changed": "Automatic top-up changed",
        "return.filed": "Return filed", "return.answered": "Return answered by the seller",
        "return.decided": "Return decided by an admin",
        "returns.contacts_viewed": "Contested returns' contacts viewed",
        "outbox.contacts_viewed": "Outbox message's contacts viewed",
        "outcomes.recorded": "Outcomes recorded",
        "api_key.created": "API key created", "api_key.revoked": "API key revoked",
        "batch.paused": "Batch paused", "batch.resumed": "Batch resumed",
        "batch.withdrawn": "Batch withdrawn", "batch.repriced": "Batch repriced",
        "company.member_invited": "Member invited", "company.member_joined": "Member joined",
        "company.member_removed": "Member removed",
        "account.profile_changed": "Profile changed",
        "user.created_by_cli": "User created (CLI)", "user.email_verified": "Email verified",
        "user.password_reset_requested": "Password reset asked for",
        "user.password_reset": "Password reset",
        "user.two_factor_enabled": "Two-factor login turned on",
        "user.two_factor_disabled": "Two-factor login turned off",
        "user.two_factor_failed": "Wrong two-factor code",
        "user.recovery_code_used": "Recovery code used",
        "user.recovery_codes_replaced": "Recovery codes replaced",
        "receipts.view": "Receipts viewed",
        "suppressions.added": "Added to the suppression list",
        "suppressions.removed": "Taken off the suppression list",
        "suppressions.cleared": "Suppression list emptied",
        "seller.trust_changed": "Trust level changed",
        "ledger.manual_credit": "Credit by the exchange",
        "ledger.manual_debit": "Debit by the exchange",
        "ledger.bank_transfer": "Bank transfer recorded",
        "ledger.reconciled": "Ledger reconciled",
        "ledger.reconciliation_failed": "Ledger reconciliation failed",
        "payouts.account_created": "Payout account created", "payouts.run": "Payouts run",
        "payouts.manual": "Payout by bank transfer",
        "spot_check.started": "Spot-check started", "spot_check.verdict": "Spot-check verdict",
        "spot_check.decided": "Spot-check decided",
        "spot_check.contacts_viewed": "Spot-check contacts viewed",
        "privacy.suppressed": "Person suppressed", "privacy.erased": "Person erased",
        "privacy.retention_purge": "Old data purged",
        "privacy.opt_out_requested": "Opt-out asked for",
        "privacy.opted_out": "Person opted out",
        "privacy.opt_out_acknowledged": "Opt-out notices read",
        "do_not_call.loaded": "Do-not-call list loaded",
        "do_not_call.removed": "Taken off the do-not-call list",
    },
    # The text encodings the upload reader reports (ingest.reader), as sellers know them.
    "encoding": {
        "utf-8": "UTF-8", "utf-8-sig": "UTF-8 (with a byte order mark, as Excel saves it)",
        "cp1251": "Windows-1251 (Cyrillic)", "cp1252": "Windows-1252 (Western European)",
        "latin_1": "Latin-1 (ISO-8859-1)", "utf-16": "UTF-16 (Excel's Unicode text)",
        "utf-16-le": "UTF-16 (little-endian)", "utf-16-be": "UTF-16 (big-endian)",
    },
    # A coded value in an audit entry's details, by "key:value" (templates/_audit.html).
    "audit_value": {
        "source:marked": "Marked on a page or by the API", "source:csv": "An uploaded CSV file",
        "format:webhook": "Our signed JSON (webhook)", "format:json": "JSON",
        "format:form": "Form-encoded", "format:xml": "XML",
        "reply:status": "Accepted when the reply is HTTP 2xx",
        "reply:json": "Accepted when a JSON path has the expected value",
        "reply:xpath": "Accepted when an XPath has the expected value",
        "reply:regex": "Accepted when a pattern matches",
        "mode:lead": "One message per lead", "mode:digest": "A digest of the leads sold",
        "digest:hourly": "Every hour", "digest:daily": "Every day",
    },
}


def label(value, kind: str) -> str:
    """The words for a code ("f" → "Female"); empty for no value, and a code we have no
    words for is shown readable ("requires_action" → "Requires action")."""
    if value is None or value == "":
        return ""
    code = value.value if isinstance(value, Enum) else str(value)
    return LABELS[kind].get(code) or code.replace("_", " ").capitalize()


def choices(kind: str, codes=None) -> list[SelectChoice]:
    """A form's choices (code, words), in `codes`' order or the table's."""
    return [SelectChoice(code, label(code, kind)) for code in (codes or LABELS[kind])]


# An order's filters (app.market.filters.Filters.to_dict) as the order page states them.
_FILTER_NAMES = {
    "age_min": "age from", "age_max": "age to", "genders": "gender", "regions": "regions",
    "countries": "countries", "require": "contacts", "marital_statuses": "marital status",
    "employed": "employment", "interests": "interests", "max_age_days": "consented within (days)",
    "exclusive_only": "exclusive only", "min_score": "score at least",
    "min_temperature": "temperature at least",
}
_FILTER_KINDS = {"genders": "gender", "marital_statuses": "marital_status",
                 "employed": "employed", "require": "require"}


def describe_filters(filters: dict, language: str = "en") -> list[tuple[str, str]]:
    """(name, value in words) of each filter the order sets: "regions", "Москва, …"."""
    from app.services.regions import country_name, outermost, region_name

    described = []
    for key, value in filters.items():
        if value in (None, [], False):
            continue
        values = value if isinstance(value, list) else [value]
        if key == "regions":
            words = [region_name(code, language) for code in outermost(values)]
        elif key == "countries":
            words = [country_name(code, language) for code in values]
        elif key in _FILTER_KINDS:
            words = [label(v, _FILTER_KINDS[key]) for v in values]
        elif value is True:
            words = ["yes"]
        else:
            words = [str(v) for v in values]
        described.append((_FILTER_NAMES.get(key, key.replace("_", " ")), ", ".join(words)))
    return described
