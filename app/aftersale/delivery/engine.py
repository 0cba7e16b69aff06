"""Jobs: each sale delivered to its order's URL, as our signed JSON webhook (SPEC §11)
or as an HTTP POST in the buyer's format (SPEC §12, `http`). A failure to get an
answer (no connection, a timeout, an HTTP error status) is retried with growing delays;
a rejection -- the buyer's system answered and its reply rule reads "rejected", e.g. a
missing field -- is not, since the same request would be rejected again: it waits
for the buyer to correct the settings and send it again (`resend`). Each attempt is
logged with the request sent, the reply and its milliseconds, and each failure reads
as a sentence. Only
public addresses are called, unless WEBHOOK_ALLOW_PRIVATE (app.services.outbound).
`deliver` owns its commits; `resend` is an operation (the caller commits)."""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Iterable, Optional
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from app.aftersale.delivery import http, webhook
from app.consent import certificates
from app.core import events
from app.core.mail import public_url
from app.errors import Conflict
from app.extensions import db
from app.models import (
    ConsentCertificate, DeliveryAttempt, DeliveryStatus, HttpDelivery, Lead, Order, Sale,
    WebhookDelivery, refunded,
)
from app.models.orders import refused_by_buyer
from app.models.types import utcnow
from app.people import notifications, opt_out
from app.services.crypto import current_vault
from app.services.delivery import sale_record

# Delay before attempt n+1 after n failures: minutes to hours, about a day in all.
RETRY_DELAYS = [timedelta(seconds=s) for s in (10, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)]
TIMEOUT_SECONDS = 5
SENDERS = 64  # deliveries a process sends at once, for all its delivery runs
REPLY_LOGGED = 2048  # bytes of each reply kept in the log
MASK = "••••••"
# Notices about a person (erased, opted out): always our signed JSON, whatever format
# the order's leads go in, and never carrying the person's data.
NOTICES = ("lead.erased", "lead.opted_out")


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict
    body: bytes
    secret_headers: frozenset = frozenset()  # names whose values the log masks

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or self.url

    def shown(self) -> str:
        """The request as sent, secret header values masked."""
        lines = [f"POST {self.url}"] + [
            f"{name}: {MASK if name in self.secret_headers else value}"
            for name, value in self.headers.items()]
        return "\n".join(lines) + "\n\n" + self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Outcome:
    request: Optional[Request]  # None: nothing could be sent
    milliseconds: int
    status: Optional[int] = None
    reply: bytes = b""
    error: Optional[str] = None  # None: accepted
    reason: Optional[str] = None  # the buyer's own reason, accepted or not

    @property
    def rejected(self) -> bool:
        """The buyer's system answered (2xx) and its reply rule says no: the request
        itself is refused, not its transport."""
        return refused_by_buyer(self.status, self.error)


def failure(exc: Exception, host: str, timeout: float) -> str:
    """What went wrong with a request, as a sentence for the buyer."""
    import requests  # here and in send: a process that sends nothing does not load it

    from app.services import outbound

    if isinstance(exc, outbound.Refused):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return f"{host} did not answer within {timeout:g} s"
    causes, seen = [exc], []
    while causes:  # requests wraps urllib3's errors, which wrap the socket's
        cause = causes.pop()
        if not isinstance(cause, BaseException) or any(cause is s for s in seen):
            continue
        seen.append(cause)
        causes += [getattr(cause, "reason", None), cause.__cause__, cause.__context__,
                   *(a for a in cause.args if isinstance(a, BaseException))]
    text = " ".join(str(s) for s in seen)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return f"the secure connection to {host} failed: its certificate is not valid for {host}"
        return f"the secure connection (TLS) to {host} failed"
    if any(isinstance(s, ConnectionRefusedError) for s in seen) or "Connection refused" in text:
        return f"connection refused by {host}"
    if any(isinstance(s, ConnectionResetError) for s in seen) or "RemoteDisconnected" in text:
        return f"{host} closed the connection without answering"
    if isinstance(exc, requests.ConnectionError):
        return f"could not connect to {host}"
    return f"the request to {host} failed"


def _headers(method: HttpDelivery) -> dict:
    return json.loads(current_vault().decrypt(method.headers_enc)) if method.headers_enc else {}


def rule_of(method: HttpDelivery | None) -> http.ReplyRule:
    if method is None:
        return http.ReplyRule()
    return http.ReplyRule(method.reply_kind, method.reply_path, method.reply_accept,
                          method.reply_reason)


def request_for(order: Order, method: HttpDelivery | None, payload: dict, event: str,
                delivery: str) -> Request:
    """The request carrying payload (a sale record, with its event) to the order's URL:
    in the buyer's format if it has one, else our signed JSON (erasure notices always)."""
    if method is None or event in NOTICES:
        headers, body = webhook.signed({"event": event, **payload},
                                       current_vault().decrypt(order.webhook_secret_enc),
                                       event, delivery)
        return Request(order.webhook_url, headers, body)
    content_type, body = http.render(method.body_format, http.parse_mapping(method.mapping),
                                     http.record_of(payload))
    custom = _headers(method)
    return Request(order.webhook_url, {"Content-Type": content_type,
                                       "User-Agent": "LeadX-Delivery/1", **custom}, body,
                   frozenset(custom))


def send(request: Request, rule: http.ReplyRule) -> Outcome:
    """One POST and the verdict of the reply rule on its reply; no database."""
    import requests

    from app.services import outbound

    started = time.monotonic()
    try:
        reply = outbound.post(request.url, data=request.body, headers=request.headers,
                              timeout=TIMEOUT_SECONDS,
                              allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except (outbound.Refused, requests.RequestException) as exc:
        return Outcome(request, round((time.monotonic() - started) * 1000),
                       error=failure(exc, request.host, TIMEOUT_SECONDS))
    milliseconds = round((time.monotonic() - started) * 1000)
    verdict = http.read_reply(rule, reply.status, reply.body, request.host)
    return Outcome(request, milliseconds, reply.status, reply.body,
                   None if verdict.accepted else verdict.reason,
                   verdict.reason if verdict.accepted else None)


def sample_sale(order: Order) -> dict:
    """A made-up sale, marked as a test wherever a CRM would show it."""
    now = utcnow().replace(microsecond=0).isoformat()
    return {"sale_id": 0, "order_id": order.id, "price": order.price,
            "currency": current_app.config["CURRENCY"], "sold_at": now, "test": True,
            "lead": {"id": 0, "first_name": "Test", "last_name": "Lead (LeadX test)",
                     "email": "test.lead@example.com", "phone": "+14155550123", "age": 35,
                     "gender": "female", "region": "CA", "country": "US",
                     "city": "San Francisco", "postal_code": "94105", "marital_status": "single",
                     "employed": True, "interests": ["insurance"], "budget": None,
                     "authority": None, "need": None, "timeframe": None, "consent_at": now,
                     "source_url": "https://leadx.example/test-lead",
                     "consent_text": "A test lead sent from LeadX; not a real person.",
                     "ip": "192.0.2.1", "trustedform_cert_url": None, "jornaya_leadid": None,
                     "sub_id": "leadx-test", "score": 50, "temperature": "warm",
                     "erased_at": None, "timezone": "America/Los_Angeles",
                     "local_time": utcnow().astimezone(ZoneInfo("America/Los_Angeles"))
                     .replace(microsecond=0).isoformat(),
                     "opt_out_code": "TESTCODE", "opt_out_url": public_url("/opt-out"),
                     "do_not_call": False}}


def send_test(order: Order) -> Outcome:
    """The sample sale sent with the order's current settings; nothing is stored."""
    if not order.webhook_url:
        return Outcome(None, 0, error="the order has no delivery URL")
    method = db.session.get(HttpDelivery, order.id)
    request = request_for(order, method, sample_sale(order), "lead.test", "test")
    request = replace(request, headers={**request.headers, "X-LeadX-Test": "1"})
    db.session.commit()  # nothing held over the network call
    return send(request, rule_of(method))


def _prepared(delivery: WebhookDelivery, methods: Optional[dict] = None,
              certified: Optional[dict] = None
              ) -> tuple[Optional[Request], http.ReplyRule, str]:
    """The request a delivery sends now, its reply rule and the method's name.
    `methods`, `certified`: the orders' HTTP delivery methods and the leads' consent
    certificates (certificates.by_lead), if loaded already."""
    order = db.session.get(Order, delivery.order_id)
    sale = db.session.get(Sale, delivery.sale_id)
    lead = db.session.get(Lead, sale.lead_id)
    method = methods.get(order.id) if methods is not None else db.session.get(HttpDelivery, order.id)
    if delivery.event == "lead.erased":
        # Tells the buyer to delete the person too; carries no personal data itself.
        payload = {"sale_id": sale.id, "order_id": sale.order_id, "lead_id": lead.id,
                   "erased_at": lead.erased_at.isoformat() if lead.erased_at else None}
    elif delivery.event == "lead.opted_out":
        # Tells the buyer to stop contacting the person (SPEC §14), no personal data.
        notice = opt_out.notice_of(sale.id)
        payload = {"sale_id": sale.id, "order_id": sale.order_id, "lead_id": lead.id,
                   "opted_out_at": notice.created_at.isoformat(),
                   "acknowledge_by": notice.due_at.isoformat()}
    else:
        if certified is None:
            certified = certificates.by_lead([lead.id])
        payload = sale_record(sale, lead, certificate=certified.get(lead.id))
    request = order.webhook_url and request_for(order, method, payload, delivery.event,
                                                str(delivery.id)) or None
    rule = rule_of(method if delivery.event not in NOTICES else None)
    return request, rule, "webhook" if method is None or delivery.event in NOTICES else "http"


def _outcome(request: Optional[Request], rule: http.ReplyRule) -> Outcome:
    return send(request, rule) if request else \
        Outcome(None, 0, error="the order has no delivery URL")


def _record(delivery: WebhookDelivery, request: Optional[Request], method: str,
            outcome: Outcome) -> None:
    """The attempt in the log and the delivery's new state."""
    delivery.attempts += 1
    delivery.last_status_code = outcome.status
    delivery.last_error = outcome.error and outcome.error[:500]
    vault = current_vault()
    db.session.add(DeliveryAttempt(
        delivery_id=delivery.id, milliseconds=outcome.milliseconds, method=method,
        request_enc=vault.encrypt(request.shown() if request else "nothing sent"), status_code=outcome.status,
        reply_enc=vault.encrypt(outcome.reply[:REPLY_LOGGED].decode("utf-8", "replace"))
        if outcome.status is not None else None, error=delivery.last_error))
    if outcome.error is None:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = utcnow()
    elif outcome.rejected or delivery.attempts > len(RETRY_DELAYS):
        delivery.status = DeliveryStatus.REJECTED if outcome.rejected else DeliveryStatus.FAILED
        notifications.delivery_failing(delivery, outcome.error, rejected=outcome.rejected)
    else:
        delivery.next_attempt_at = utcnow() + RETRY_DELAYS[delivery.attempts - 1]


def deliver(delivery_id: int) -> bool:
    """One attempt; True when the buyer's system accepted the sale."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status is DeliveryStatus.DELIVERED:
        return True
    request, rule, method = _prepared(delivery)
    db.session.commit()  # no transaction (nor SQLite lock) held over the network call
    outcome = _outcome(request, rule)
    _record(db.session.get(WebhookDelivery, delivery_id), request, method, outcome)
    db.session.commit()
    return outcome.error is None


_pool: Optional[tuple[int, ThreadPoolExecutor]] = None  # (process id, its senders)
_pool_lock = threading.Lock()


def _senders() -> ThreadPoolExecutor:
    """This process's sender threads, shared by every delivery run (started as
    needed, then kept): starting threads for each group of sales cost more than
    sending it to a local buyer."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a forked process starts its own
            _pool = (os.getpid(), ThreadPoolExecutor(SENDERS,
                                                       thread_name_prefix="leadx-send"))
        return _pool[1]


def deliver_sales(sale_ids: Iterable[int]) -> None:
    """The first attempt of these sales' pending deliveries to the order's URL (by
    email: app.aftersale.delivery.emailing). Several (the sales of one
    commit: a group of real-time leads) are read together, sent at once on threads of
    their own and logged in one transaction, so none waits behind the others."""
    # Each delivery with its sale, lead, order, HTTP method and consent certificate in
    # one statement (held here: the identity map keeps only what is referenced).
    rows = db.session.execute(
        sa.select(WebhookDelivery, Sale, Lead, Order, HttpDelivery, ConsentCertificate.public_id)
        .join(Sale, Sale.id == WebhookDelivery.sale_id)
        .join(Lead, Lead.id == Sale.lead_id)
        .join(Order, Order.id == WebhookDelivery.order_id)
        .outerjoin(HttpDelivery, HttpDelivery.order_id == WebhookDelivery.order_id)
        .outerjoin(ConsentCertificate, ConsentCertificate.lead_id == Lead.id)
        .where(WebhookDelivery.sale_id.in_(list(sale_ids)), WebhookDelivery.channel == "url",
               WebhookDelivery.status == DeliveryStatus.PENDING)
        .order_by(WebhookDelivery.id)).all()
    if not rows:
        return
    methods = {order.id: method for _, _, _, order, method, _ in rows}
    certified = {lead.id: public_id for _, _, lead, _, _, public_id in rows if public_id}
    prepared = [(delivery.id, *_prepared(delivery, methods, certified))
                for delivery, *_ in rows]
    del rows
    db.session.commit()  # no transaction (nor SQLite lock) held over the network calls
    if len(prepared) == 1:
        outcomes = [_outcome(*prepared[0][1:3])]
    else:
        app = current_app._get_current_object()

        def attempt(request, rule) -> Outcome:
            with app.app_context():
                return _outcome(request, rule)
        outcomes = list(_senders().map(attempt, [p[1] for p in prepared],
                                       [p[2] for p in prepared]))
    _log_first(prepared, outcomes)
    db.session.commit()


def _log_first(prepared: list[tuple], outcomes: list[Outcome]) -> None:
    """The attempts of a delivery run in the log, and the deliveries' new state: those
    accepted in two set-based statements (no rows read again, no ORM objects); the
    others (retry times, failure notices) through _record."""
    vault, now = current_vault(), utcnow()
    accepted, others = [], []
    for (delivery_id, request, _, method), outcome in zip(prepared, outcomes):
        if outcome.error is None:
            accepted.append((delivery_id, request, method, outcome))
        else:
            others.append((delivery_id, request, method, outcome))
    if accepted:
        db.session.execute(sa.insert(DeliveryAttempt.__table__), [
            {"delivery_id": delivery_id, "at": now, "milliseconds": outcome.milliseconds,
             "method": method, "request_enc": vault.encrypt(request.shown()),
             "status_code": outcome.status, "error": None,
             "reply_enc": vault.encrypt(outcome.reply[:REPLY_LOGGED].decode("utf-8", "replace"))}
            for delivery_id, request, method, outcome in accepted])
        table = WebhookDelivery.__table__
        db.session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("delivery_id"))
            .values(status=DeliveryStatus.DELIVERED, attempts=table.c.attempts + 1,
                    last_status_code=sa.bindparam("code"), last_error=None, delivered_at=now),
            [{"delivery_id": delivery_id, "code": outcome.status}
             for delivery_id, _, _, outcome in accepted])
    if others:
        now_loaded = {d.id: d for d in db.session.scalars(sa.select(WebhookDelivery).where(
            WebhookDelivery.id.in_([o[0] for o in others])))}
        for delivery_id, request, method, outcome in others:
            _record(now_loaded[delivery_id], request, method, outcome)


def due_deliveries(limit: int = 500) -> list[int]:
    return list(db.session.scalars(sa.select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.channel == "url",
        WebhookDelivery.next_attempt_at <= utcnow()).order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)))


def resend(order: Order, delivery_id: int) -> WebhookDelivery:
    """The buyer asks for a delivery again (after fixing their settings); it is sent
    once the caller commits (DeliveryRequested)."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.order_id != order.id:
        raise Conflict("No such delivery for this order.", code="unknown_delivery")
    # Sent again, it would reach the buyer's system as a lead without a person.
    if db.session.scalar(sa.select(Lead.erased_at).join(Sale, Sale.lead_id == Lead.id)
                         .where(Sale.id == delivery.sale_id)) is not None:
        raise Conflict("This person's contacts were erased at their request: there is "
                       "nothing left to send.", code="lead_erased")
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = utcnow()
    db.session.flush()
    events.record(events.DeliveryRequested((delivery.sale_id,)))
    return delivery


def _never_sent(order: Order, what) -> sa.Select:
    """The order's sales that have no delivery to its URL: those made while it had
    none. Erased leads and leads refunded by an accepted return are not the buyer's to
    receive any more."""
    return (sa.select(what).select_from(Sale).join(Lead, Lead.id == Sale.lead_id)
            .where(Sale.order_id == order.id, Lead.erased_at.is_(None),
                   ~sa.exists().where(WebhookDelivery.sale_id == Sale.id,
                                      WebhookDelivery.order_id == order.id,
                                      WebhookDelivery.channel == "url"),
                   ~refunded(Sale.id)))


def never_sent(order: Order) -> list[int]:
    return list(db.session.scalars(_never_sent(order, Sale.id).order_by(Sale.id)))


def never_sent_count(order: Order) -> int:
    return db.session.scalar(_never_sent(order, sa.func.count()))


def send_never_sent(order: Order) -> int:
    """A delivery for each sale made before the order had a delivery URL, sent once the
    caller commits (DeliveryRequested). Returns how many."""
    if not order.webhook_url:
        raise Conflict("Save a delivery URL first; the leads go there.", code="no_delivery_url")
    sale_ids = never_sent(order)
    db.session.add_all(WebhookDelivery(sale_id=sale_id, order_id=order.id) for sale_id in sale_ids)
    db.session.flush()
    if sale_ids:
        events.record(events.DeliveryRequested(tuple(sale_ids)))
    return len(sale_ids)


def log_for(order: Order, limit: int = 100, offset: int = 0) -> list[WebhookDelivery]:
    return db.session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.order_id == order.id)
                              .order_by(WebhookDelivery.id.desc()).limit(limit)
                              .offset(offset)).all()
