"""Operations: how an order's leads are delivered (SPEC §12): to its URL as our signed
JSON webhook or as an HTTP POST in the buyer's format, and by email (to one or more
addresses, a message per lead or a digest). Editable at any time, also after the
order has closed (a wrong URL or template must stay correctable). Flush; callers commit.
Each change is in the audit log: what changed, never a header's value or an address
beyond its domain (app.services.audit)."""
import json
import re
from typing import Optional

from email_validator import EmailNotValidError, validate_email

from app.aftersale.delivery import http
from app.aftersale.delivery.engine import MASK
from app.errors import ValidationFailed
from app.extensions import db
from app.models import EmailDelivery, HttpDelivery, Order
from app.services import audit
from app.services.crypto import current_vault

_HEADER = re.compile(r"^\s*([A-Za-z0-9-]{1,100})\s*:\s*(.*?)\s*$")
# Set by us on every request, whatever the template says.
RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding"}
MAX_ADDRESSES = 10
EMAIL_MODES = ("lead", "digest")
DIGESTS = ("hourly", "daily")


def method_for(order: Order) -> Optional[HttpDelivery]:
    return db.session.get(HttpDelivery, order.id)


def headers_text(method: Optional[HttpDelivery]) -> str:
    """The saved headers as the form shows them: names with their values masked."""
    if method is None or method.headers_enc is None:
        return ""
    return "\n".join(f"{name}: {MASK}" for name in
                     json.loads(current_vault().decrypt(method.headers_enc)))


def _parse_headers(text: str, saved: dict) -> dict:
    headers = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _HEADER.match(line)
        if not match:
            raise ValidationFailed(f"Headers, line {number}: write it as  Name: value.",
                                   code="bad_header")
        name, value = match.groups()
        if name.lower() in RESERVED_HEADERS:
            raise ValidationFailed(f"Headers, line {number}: {name} is set by LeadX.",
                                   code="bad_header")
        # The masked value the form showed: keep what was saved under that name.
        headers[name] = saved.get(name, "") if value == MASK else value
    return headers


def use_webhook(order: Order) -> None:
    """Back to our signed JSON webhook."""
    method = method_for(order)
    if method is not None:
        db.session.delete(method)
        db.session.flush()
        _audit(order, "order.delivery_format_changed", {"format": "webhook"})


def _audit(order: Order, action: str, details: dict) -> None:
    audit.record(action, actor=order.buyer, subject_type="order", subject_id=order.id,
                 details=details)


def use_http(order: Order, *, body_format: str, mapping: str, headers: str,
             rule: http.ReplyRule) -> HttpDelivery:
    """Deliver in the buyer's format; ValidationFailed says what cannot be used."""
    if body_format not in http.FORMATS:
        raise ValidationFailed("Choose JSON, form or XML.", code="bad_format")
    try:
        http.parse_mapping(mapping)
        rule.check()
    except http.TemplateError as exc:
        raise ValidationFailed(str(exc), code="bad_template") from None
    method = method_for(order)
    saved = json.loads(current_vault().decrypt(method.headers_enc)) \
        if method is not None and method.headers_enc else {}
    parsed = _parse_headers(headers, saved)
    if method is None:
        method = HttpDelivery(order_id=order.id)
        db.session.add(method)
    method.body_format, method.mapping = body_format, mapping.strip()
    method.headers_enc = current_vault().encrypt(json.dumps(parsed)) if parsed else None
    method.reply_kind, method.reply_path = rule.kind, rule.path.strip()
    method.reply_accept, method.reply_reason = rule.accept.strip(), rule.reason.strip()
    db.session.flush()
    _audit(order, "order.delivery_format_changed",
           {"format": body_format, "header_names": sorted(parsed), "reply": rule.kind})
    return method


def email_for(order: Order) -> Optional[EmailDelivery]:
    return db.session.get(EmailDelivery, order.id)


def _addresses(text: str) -> list[str]:
    found = []
    for raw in re.split(r"[\s,;]+", text):
        if not raw:
            continue
        try:
            address = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValidationFailed(f"{raw} is not an email address: {exc}",
                                   code="bad_email") from None
        if address.lower() not in (a.lower() for a in found):
            found.append(address)
    if not found:
        raise ValidationFailed("Give at least one email address.", code="bad_email")
    if len(found) > MAX_ADDRESSES:
        raise ValidationFailed(f"At most {MAX_ADDRESSES} addresses.", code="bad_email")
    return found


def use_email(order: Order, *, addresses: str, mode: str, digest: str) -> EmailDelivery:
    """Also deliver by email; ValidationFailed says what cannot be used. Sales made
    from now on get a delivery by email each (those already made do not)."""
    if mode not in EMAIL_MODES or digest not in DIGESTS:
        raise ValidationFailed("Choose a message per lead, or an hourly or daily digest.",
                               code="bad_email_mode")
    parsed = _addresses(addresses)
    method = email_for(order)
    if method is None:
        method = EmailDelivery(order_id=order.id)
        db.session.add(method)
    method.addresses, method.mode, method.digest = ", ".join(parsed), mode, digest
    db.session.flush()
    _audit(order, "order.email_delivery_changed",
           {"addresses": len(parsed), "domains": sorted({a.rsplit("@", 1)[1].lower()
                                                         for a in parsed}),
            "mode": mode, "digest": digest if mode == "digest" else None})
    return method


def stop_email(order: Order) -> None:
    """No more deliveries by email; those pending wait for addresses again."""
    method = email_for(order)
    if method is not None:
        db.session.delete(method)
        db.session.flush()
        _audit(order, "order.email_delivery_stopped", {})
