"""Notifications (SPEC §13), operations (flush; callers commit).

Each kind has one raiser below, called by the operation where its event happens, in
that operation's transaction: a rollback takes the notice back, and its email, stored
with it, is sent once the transaction commits (app.core.mail, EmailsQueued). Each
user chooses per kind whether to be told in the app, by email, both or neither.
The matcher is the exception: storing sales must not pay for notices, so it records
events (OrdersFilled, OrdersCapped) and `notification_jobs` writes those after its
commit.

Wording: titles and bodies name batches, orders, sales, returns and amounts, never a
person's contact data; the link leads to the page that shows more to whoever may see
it. A notice is stored as text, written once for each person who reads it: wording
that shows an amount, a count or a moment is passed as a function, called in that
person's locale and time zone (app.formatting.reading_as), so a Russian-speaking buyer
reads "1 234,50 $" and their own clock whoever's request or job raised it. Reading, marking read and the choices are here too; lists are in
`notification_queries`."""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Optional, Union

import sqlalchemy as sa
from flask import current_app

from app.core import mail
from app.errors import ValidationFailed
from app.extensions import db
from app.formatting import format_moment, format_money, format_number, reading_as
from app.models import (
    DEFECTS, AccountKind, Lead, LedgerAccount, Notification, NotificationKind,
    NotificationSetting, Order, Role, Sale, SpotCheckItem, User,
)
from app.models.types import utcnow
from app.people.membership import people_of

Kind = NotificationKind


@dataclass(frozen=True)
class KindInfo:
    label: str
    description: str
    roles: tuple[Role, ...]


KINDS = {
    Kind.BATCH_PROCESSED: KindInfo(
        "Batch processed", "An upload finished: how many rows were accepted and rejected.",
        (Role.SELLER,)),
    Kind.SPOT_CHECK_DECIDED: KindInfo(
        "Spot-check result", "A batch passed or failed its spot-check; a failure lists the "
        "failing sampled leads and the admin's note.", (Role.SELLER,)),
    Kind.RETURN_TO_ANSWER: KindInfo(
        "Return to answer", "A buyer returned one of your leads: accept or contest it "
        "before silence accepts it.", (Role.SELLER,)),
    Kind.RETURN_DECIDED: KindInfo(
        "Return decided", "A return was accepted (and the sale reversed) or rejected.",
        (Role.SELLER, Role.BUYER)),
    Kind.RETURN_CONTESTED: KindInfo(
        "Return contested", "A seller contested a return: it waits for an admin's decision.",
        (Role.ADMIN,)),
    Kind.ORDER_FILLED: KindInfo(
        "Order filled or capped", "An order received all its leads, reached its budget, "
        "or used up a cap of its hour, day, week or month.", (Role.BUYER,)),
    Kind.LOW_BALANCE: KindInfo(
        "Balance low", "Your available balance fell below the threshold you set (or was "
        "below it when you set it).",
        (Role.BUYER,)),
    Kind.DELIVERY_FAILING: KindInfo(
        "Deliveries failing", "A lead could not be delivered (by URL or email) after every "
        "retry, or your system rejected it.", (Role.BUYER,)),
    Kind.PAYOUT_SENT: KindInfo("Payout sent", "Your earnings were paid out.", (Role.SELLER,)),
    Kind.PERSON_ERASED: KindInfo(
        "Person erased or opted out", "A person you bought asked to be erased (delete them "
        "from your systems too) or opted out of being contacted (stop, and acknowledge it "
        "within 10 business days).", (Role.BUYER,)),
}
MAX_ITEMS = 50  # lines listed in one notice; the page behind the link has them all


# Wording: as it is, or a function called in each reader's locale and zone.
Words = Union[str, Callable[[], str]]
Lines = Union[Iterable[str], Callable[[], Iterable[str]]]


def _told(words: Words) -> str:
    return words() if callable(words) else words


def kinds_for(role: Role) -> list[Kind]:
    return [kind for kind, info in KINDS.items() if role in info.roles]


def path(endpoint: str, **values) -> str:
    """A link to a page of the app, also where there is no request (jobs)."""
    return current_app.url_map.bind("localhost").build(endpoint, values)


def notify(user_id: int, kind: Kind, title: Words, *, paragraphs: Iterable[Words] = (),
           items: Lines = (), link: str = "", link_label: str = "Open in LeadX",
           subject: str = "", data: Optional[dict] = None,
           email_kind: str = "", about_leads: Iterable[int] = ()) -> Optional[Notification]:
    """Tell the user, in the app and by email as they chose; when the user is a
    company's account, every person of the company, each as they chose (they share its
    orders, batches and balance). With `subject`, nothing is repeated to a person while
    they have not read their last notice about the same thing. Returns the account's
    own notice, if any. `email_kind` files the email under a narrower name than the
    kind it is switched by (a cap reached is not an order filled). `about_leads`: the
    leads whose people the words may name (a note on them, a reply quoting them): an
    erasure clears the emails by them, and rewrites the notices (below)."""
    paragraphs = list(paragraphs)  # told to each person
    items = items if callable(items) else list(items)
    about_leads = list(about_leads)
    notices = [_notify_one(person_id, kind, title, paragraphs=paragraphs, items=items,
                           link=link, link_label=link_label, subject=subject, data=data,
                           email_kind=email_kind or kind.value, about_leads=about_leads)
               for person_id in people_of(user_id)]
    return notices[0]


def _notify_one(user_id: int, kind: Kind, title: Words, *, paragraphs: list[Words],
                items: Lines, link: str, link_label: str, subject: str,
                data: Optional[dict], email_kind: str,
                about_leads: list[int]) -> Optional[Notification]:
    setting = db.session.get(NotificationSetting, (user_id, kind))
    in_app, by_email = (setting.in_app, setting.email) if setting else (True, True)
    user = db.session.get(User, user_id)
    if user is None or not user.is_active_account or not (in_app or by_email):
        return None
    if subject and db.session.scalar(
            sa.select(Notification.id).where(Notification.user_id == user_id,
                                             Notification.kind == kind,
                                             Notification.subject == subject,
                                             Notification.read_at.is_(None)).limit(1)):
        return None
    with reading_as(user):
        return _write(user, kind, _told(title), [t for p in paragraphs if (t := _told(p))],
                      list(items() if callable(items) else items), link=link,
                      link_label=link_label, subject=subject, data=data,
                      in_app=in_app, by_email=by_email, email_kind=email_kind,
                      about_leads=about_leads)


def _write(user: User, kind: Kind, title: str, paragraphs: list[str], items: list[str], *,
           link: str, link_label: str, subject: str, data: Optional[dict], in_app: bool,
           by_email: bool, email_kind: str, about_leads: list[int]) -> Optional[Notification]:
    """Store the notice and queue its email, both worded for `user`."""
    user_id = user.id
    shown = _shown(items)
    notification = None
    if in_app:
        notification = Notification(user_id=user_id, kind=kind, subject=subject,
                                    title=title[:200], body="\n\n".join(paragraphs),
                                    link=link, data={**(data or {}), "items": shown})
        db.session.add(notification)
    if by_email:
        mail.queue(user.email, title, "notification", user_id=user_id, kind=email_kind,
                   title=title, paragraphs=paragraphs, items=shown,
                   link=mail.public_url(link) if link else "", link_label=link_label,
                   kind_label=KINDS[kind].label, lead_ids=about_leads,
                   settings_link=mail.public_url(path("notifications.settings")))
    db.session.flush()
    return notification


def _shown(items: list[str]) -> list[str]:
    """The lines a notice lists: the first MAX_ITEMS, then how many more."""
    return items[:MAX_ITEMS] + ([f"… and {len(items) - MAX_ITEMS} more"]
                                if len(items) > MAX_ITEMS else [])


# Reading and choosing -------------------------------------------------------------

def mark_read(user: User, notification_id: int) -> Optional[Notification]:
    """Mark one of the user's notifications read; None if it is not theirs."""
    notification = db.session.get(Notification, notification_id)
    if notification is None or notification.user_id != user.id:
        return None
    if notification.read_at is None:
        notification.read_at = utcnow()
        db.session.flush()
    return notification


def mark_all_read(user: User) -> int:
    return db.session.execute(
        sa.update(Notification).where(Notification.user_id == user.id,
                                      Notification.read_at.is_(None))
        .values(read_at=utcnow()).execution_options(synchronize_session=False)).rowcount


def choose(user: User, choices: dict[Kind, tuple[bool, bool]]) -> None:
    """Store the user's choice (in the app, by email) for each kind of their role."""
    for kind in kinds_for(user.role):
        in_app, by_email = choices.get(kind, (True, True))
        setting = db.session.get(NotificationSetting, (user.id, kind))
        if setting is None:
            setting = NotificationSetting(user_id=user.id, kind=kind)
            db.session.add(setting)
        setting.in_app, setting.email = bool(in_app), bool(by_email)
    db.session.flush()


def set_low_balance_threshold(user: User, threshold: Optional[int]) -> None:
    """A buyer is told when their available balance falls below this; None: never.
    Setting it above what they have is a crossing too: they are told at once (else
    never, as the balance will not fall past it again), unless it was below the old
    threshold already."""
    if threshold is not None and (type(threshold) is not int or threshold < 0):
        raise ValidationFailed("The threshold is an amount of zero or more.",
                               code="invalid_threshold", details={"field": "threshold"})
    before = user.low_balance_threshold
    user.low_balance_threshold = threshold
    db.session.flush()
    if threshold is None:
        return
    # The ledger's buyer-available account (ledger imports this module: no import back).
    available = db.session.scalar(
        sa.select(LedgerAccount.balance).where(LedgerAccount.user_id == user.id,
                                               LedgerAccount.kind == AccountKind.BUYER_AVAILABLE)
    ) or 0
    if _went_low(available, available, before, threshold):
        _balance_low(user.id, available, threshold)


# The kinds, each raised where its event happens -----------------------------------

def batch_processed(batch) -> None:
    """The upload finished (live, held for a spot-check, rejected or failed)."""
    from app.models import BatchStatus

    failed = batch.status is BatchStatus.FAILED
    title = (f"Batch #{batch.id} could not be processed" if failed else
             lambda: f"Batch #{batch.id} processed: {format_number(batch.accepted)} accepted, "
                     f"{format_number(batch.rejected)} rejected")
    outcome = {
        BatchStatus.LIVE: "Its leads are on sale now.",
        BatchStatus.HELD: "Its leads wait for an admin's spot-check before they are sold.",
    }.get(batch.status, batch.error_message or "")
    counts = ("" if failed else
              lambda: f"“{batch.filename}”: {format_number(batch.rows_total)} rows, "
                      f"{format_number(batch.accepted)} accepted, "
                      f"{format_number(batch.rejected)} rejected.")
    notify(batch.seller_id, Kind.BATCH_PROCESSED, title, paragraphs=[counts, outcome],
           link=path("seller.batch_detail", batch_id=batch.id), link_label="See the batch",
           data={"batch_id": batch.id, "status": batch.status.value,
                 "rows_total": batch.rows_total, "accepted": batch.accepted,
                 "rejected": batch.rejected})


def spot_check_decided(check, passed: bool, reason: str, note: str, *, went_live: bool,
                       sales_returned: int) -> None:
    """An admin decided a batch's spot-check; a failure lists the sampled leads that
    failed it with the admin's note on each (ids and row numbers, never contacts: the
    seller's batch page shows those)."""
    failing = [item for item in check.items if item.verdict in DEFECTS]
    note = note.strip()
    if passed:
        title = f"Batch #{check.batch_id} passed its spot-check"
        after = "Its leads are on sale now." if went_live else ""
    else:
        title = f"Batch #{check.batch_id} failed its spot-check"
        after = (f"Its unsold leads were withdrawn and {sales_returned} sale"
                 f"{'s' if sales_returned != 1 else ''} of it returned and refunded to buyers.")
    notify(check.batch.seller_id, Kind.SPOT_CHECK_DECIDED, title,
           paragraphs=[reason, f"The admin's note: {note}" if note else "", after,
                       "Sampled leads that failed:" if failing else ""],
           items=[_failing_line(item.lead_id, item.lead.row_number, item.verdict, item.note)
                  for item in failing],
           about_leads=[item.lead_id for item in failing if item.note],
           link=path("seller.batch_detail", batch_id=check.batch_id) + "#spot-check",
           link_label="See the batch and its failed leads" if failing else "See the batch",
           data={"batch_id": check.batch_id, "check_id": check.id,
                 "outcome": "pass" if passed else "fail", "note": note,
                 "failing_lead_ids": [item.lead_id for item in failing]})


def _failing_line(lead_id: int, row_number: int, verdict, note: str) -> str:
    return (f"Lead #{lead_id} (row {row_number}): {verdict.value.replace('_', ' ')}"
            + (f" ({note})" if note else ""))


def return_to_answer(item, reason_label: str, now: Optional[datetime] = None) -> None:
    """A buyer's return waits for the seller, who has until its deadline."""
    deadline = item.seller_deadline
    left = time_left(deadline - (now or datetime.now(timezone.utc)))
    notify(item.seller_id, Kind.RETURN_TO_ANSWER,
           f"Return of sale #{item.sale_id} to answer within {left}",
           paragraphs=[f"A buyer returned the lead of sale #{item.sale_id}: “{reason_label}”.",
                       lambda: f"Accept or contest it within {left} (by "
                               f"{format_moment(deadline)}). If you do not answer by then, "
                               "the return is accepted and the sale reversed."],
           link=path("seller.return_list"), link_label="Answer the return",
           subject=f"return:{item.id}",
           data={"return_id": item.id, "sale_id": item.sale_id, "reason": item.reason.value,
                 "seller_deadline": deadline.isoformat()})


def return_answered(item) -> None:
    """The notice that asked the seller to answer now says how the return stands,
    not a deadline that no longer applies (its list showed the time left): raised by
    every decision, told to anyone or not, and by a contest."""
    state = {"contested": "contested, an administrator decides",
             "accepted": "accepted, the sale is reversed",
             "rejected": "rejected, the sale stands"}[item.status.value]
    for notice in db.session.scalars(sa.select(Notification).where(
            Notification.user_id.in_(people_of(item.seller_id)),
            Notification.kind == Kind.RETURN_TO_ANSWER,
            Notification.subject == f"return:{item.id}")):
        notice.title = f"Return of sale #{item.sale_id}: {state}"
        what = notice.body.split("\n\n")[0]  # the lead returned and why
        notice.body = f"{what}\n\n{state[0].upper()}{state[1:]}."
        notice.data = {key: value for key, value in notice.data.items()
                       if key != "seller_deadline"}
    db.session.flush()


DECIDED_BY = {
    "system": "The exchange decided it: {note}",
    "seller": "The seller accepted it.",
    "admin": "An administrator decided it: {note}",
    "timeout": "The seller did not answer in time, so it was accepted.",
}


def return_decided(item) -> None:
    """Both sides hear of a decision, except the seller of their own."""
    accepted = item.status.value == "accepted"
    how = DECIDED_BY[item.decided_by].format(note=item.decision_note)
    data = {"return_id": item.id, "sale_id": item.sale_id, "status": item.status.value,
            "decided_by": item.decided_by, "refund": item.refund}
    # Only an administrator's note is their own words (the others are the exchange's).
    about = [item.sale.lead_id] if item.decided_by == "admin" else []
    notify(item.buyer_id, Kind.RETURN_DECIDED,
           (lambda: f"Return of sale #{item.sale_id} accepted: {format_money(item.refund)} "
                    "refunded") if accepted else f"Return of sale #{item.sale_id} rejected",
           paragraphs=[how], link=path("buyer.return_list"), link_label="See your returns",
           data=data, about_leads=about)
    if item.decided_by != "seller":
        notify(item.seller_id, Kind.RETURN_DECIDED,
               f"Return of sale #{item.sale_id} accepted: the sale is reversed" if accepted
               else f"Return of sale #{item.sale_id} rejected: the sale stands",
               paragraphs=[how], link=path("seller.return_list"),
               link_label="See your returns", data=data, about_leads=about)


def return_contested(item, reason_label: str) -> None:
    """The seller contested a return: every admin may decide it."""
    return_answered(item)
    admin_ids = db.session.scalars(sa.select(User.id).where(
        User.role == Role.ADMIN, User.is_active_account.is_(True)).order_by(User.id)).all()
    for admin_id in admin_ids:
        notify(admin_id, Kind.RETURN_CONTESTED,
               f"Return of sale #{item.sale_id} contested: it waits for your decision",
               paragraphs=[f"The buyer's reason: “{reason_label}”. The seller contested it; "
                           "both sides' notes are on the returns page."],
               link=path("admin.return_queue"), link_label="Decide the return",
               subject=f"return:{item.id}",
               data={"return_id": item.id, "sale_id": item.sale_id,
                     "reason": item.reason.value})


def batch_refunded(sales) -> None:
    """A failed spot-check returned these sales: each buyer hears once, with the list."""
    by_buyer: dict[int, list] = {}
    for sale in sales:
        by_buyer.setdefault(sale.buyer_id, []).append(sale)
    for buyer_id, theirs in by_buyer.items():
        total = sum(sale.price for sale in theirs)
        # Worded as each reader reads it, during this call (the loop moves on after).
        notify(buyer_id, Kind.RETURN_DECIDED,
               lambda: f"{format_number(len(theirs))} lead{'s' if len(theirs) != 1 else ''} "
                       f"refunded: {format_money(total)} back on your balance",
               paragraphs=["The batch these leads came from failed its authenticity "
                           "spot-check, so every sale of it was returned and refunded."],
               items=lambda: [f"Sale #{sale.id} (order #{sale.order_id}): "
                              f"{format_money(sale.price)}" for sale in theirs],
               link=path("buyer.return_list"), link_label="See your returns",
               data={"sale_ids": [sale.id for sale in theirs], "refund": total})


def order_filled(order_id: int) -> None:
    """The order closed because it has all its leads or cannot pay for one more
    (from a job: app.people.notification_jobs)."""
    order = db.session.execute(
        sa.select(Order.id, Order.buyer_id, Order.name, Order.filled, Order.quantity,
                  Order.spent, Order.budget).where(Order.id == order_id)).one()
    complete = order.filled >= order.quantity
    title = ((lambda: f"Order #{order.id} filled: {format_number(order.filled)} leads")
             if complete else
             lambda: f"Order #{order.id} reached its budget: {format_number(order.filled)} "
                     f"of {format_number(order.quantity)} leads")
    name = f" “{order.name}”" if order.name else ""
    notify(order.buyer_id, Kind.ORDER_FILLED, title, subject=f"filled:{order.id}",
           paragraphs=[lambda: f"Order #{order.id}{name} is closed: "
                               f"{format_number(order.filled)} of "
                               f"{format_number(order.quantity)} leads delivered for "
                               f"{format_money(order.spent)}."
                               + ("" if complete else " Its budget cannot pay for one more lead."),
                       "What it held and did not spend is back on your available balance."],
           link=path("buyer.order_detail", order_id=order.id), link_label="See the order",
           data={"order_id": order.id, "filled": order.filled, "quantity": order.quantity,
                 "spent": order.spent, "budget": order.budget,
                 "reason": "filled" if complete else "budget"})


PERIOD_WORDS = {"hour": ("hourly", "hour", "this hour"), "day": ("daily", "day", "today"),
                "week": ("weekly", "week", "this week"),
                "month": ("monthly", "month", "this month")}


def caps_reached(order, uses: list[dict]) -> None:
    """An open order used up a cap of its current period (`uses`: rules.cap_use): it
    takes no lead until the next period starts. Once per cap and period (from a job:
    app.people.notification_jobs). A spend cap is used up when the next lead would
    pass it, mostly before all of it is spent: the notice says how much was."""
    for use in uses:
        if use["room"] > 0:
            continue
        adjective, period, this_period = PERIOD_WORDS[use["period"]]
        spend = use["kind"] == "spend"

        def title(use=use, adjective=adjective, this_period=this_period, spend=spend) -> str:
            if spend:
                return (f"Order #{order.id} reached its {adjective} spend cap: "
                        f"{format_money(use['used'])} of {format_money(use['cap'])} spent "
                        f"{this_period}")
            return (f"Order #{order.id} reached its {adjective} cap: "
                    f"{format_number(use['used'])} of {format_number(use['cap'])} leads "
                    f"{this_period}")

        short = spend and use["used"] < use["cap"]
        paragraph = (f"Order #{order.id} takes no more leads {this_period}"
                     + (": the next lead would exceed it." if short else ".")
                     + f" It takes them again when the next {period} starts "
                       f"({order.timezone} time), or now if you raise the cap.")
        notify(order.buyer_id, Kind.ORDER_FILLED, title, paragraphs=[paragraph],
               link=path("buyer.order_detail", order_id=order.id), link_label="See the order",
               subject=f"cap:{order.id}:{use['kind']}:{use['period_key']}",
               email_kind="order_capped",
               data={"order_id": order.id, "reason": "cap", "kind": use["kind"],
                     "period": use["period"], "cap": use["cap"], "used": use["used"]})


def balance_fell(user_id: int, before: int, after: int) -> None:
    """A buyer's available balance moved from `before` to `after`: they hear of it when
    that crosses the threshold they set (once per crossing)."""
    threshold = db.session.scalar(sa.select(User.low_balance_threshold)
                                  .where(User.id == user_id))
    if _went_low(before, after, threshold, threshold):
        _balance_low(user_id, after, threshold)


def _went_low(balance_before: int, balance_after: int, threshold_before: Optional[int],
              threshold_after: Optional[int]) -> bool:
    """The available balance is below the threshold now and was not before: a crossing,
    whether the balance fell or the threshold was raised (told once per crossing)."""
    def low(balance: int, threshold: Optional[int]) -> bool:
        return threshold is not None and balance < threshold

    return low(balance_after, threshold_after) and not low(balance_before, threshold_before)


def _balance_low(user_id: int, after: int, threshold: int) -> None:
    notify(user_id, Kind.LOW_BALANCE,
           lambda: f"Your available balance is {format_money(after)}, below "
                   f"{format_money(threshold)}",
           paragraphs=["Orders hold what they may spend from your available balance: add "
                       "funds so that new orders and changes can be placed."],
           link=path("buyer.balance"), link_label="Add funds", subject="balance",
           data={"available": after, "threshold": threshold})


def delivery_failing(delivery, error: str, *, rejected: bool = False) -> None:
    """Every retry of a delivery failed, or the buyer's system rejected it (never
    retried: the same request would be rejected again); one unread notice per order."""
    where = "by email" if delivery.channel == "email" else "to your system"
    what = (f"Your system rejected the delivery of sale #{delivery.sale_id}: {error}. "
            "It is not retried, as the same request would be rejected again."
            if rejected else
            f"The delivery of sale #{delivery.sale_id} failed {delivery.attempts} times over "
            f"a day and is no longer retried. The last error: {error}.")
    notify(_buyer_of(delivery.order_id), Kind.DELIVERY_FAILING,
           f"Your system rejected a lead of order #{delivery.order_id}" if rejected else
           f"Leads of order #{delivery.order_id} could not be delivered {where}",
           paragraphs=[what, "The leads stay on the order's page; correct the delivery "
                             "settings, send a test lead, and send them again."],
           link=path("buyer.order_delivery", order_id=delivery.order_id),
           link_label="See the delivery log", subject=f"order:{delivery.order_id}",
           data={"order_id": delivery.order_id, "sale_id": delivery.sale_id,
                 "delivery_id": delivery.id, "error": error},
           about_leads=[db.session.scalar(sa.select(Sale.lead_id)
                                          .where(Sale.id == delivery.sale_id))])


def payout_sent(payout) -> None:
    def amount() -> str:
        return format_money(payout.amount, payout.currency)

    notify(payout.seller_id, Kind.PAYOUT_SENT, lambda: f"Payout of {amount()} sent",
           paragraphs=[lambda: f"Payout #{payout.id} of {amount()} went to your account "
                               f"{payout.destination}."],
           link=path("seller.payouts"), link_label="See your payouts",
           data={"payout_id": payout.id, "amount": payout.amount,
                 "currency": payout.currency})


def person_erased(buyer_id: int, sales: list[tuple[int, int]]) -> None:
    """A person this buyer bought was erased; `sales`: (sale id, order id) of theirs."""
    notify(buyer_id, Kind.PERSON_ERASED,
           "A person you bought asked to be erased: delete them too",
           paragraphs=["Their contacts are gone from LeadX. Delete them from your CRM and "
                       "any other copy, and acknowledge it on the erasures page."],
           items=[f"Sale #{sale_id} of order #{order_id}" for sale_id, order_id in sales],
           link=path("buyer.erasures"), link_label="Acknowledge",
           data={"sale_ids": [sale_id for sale_id, _ in sales]})


def person_opted_out(buyer_id: int, sales: list[tuple[int, int]], due: datetime) -> None:
    """A person this buyer bought opted out (SPEC §14); `sales`: (sale id, order id)."""
    notify(buyer_id, Kind.PERSON_ERASED,
           "A person you bought opted out: stop contacting them",
           paragraphs=[lambda: "They asked not to be contacted any more. Stop calling, "
                               "texting and emailing them, remove them from your lists, and "
                               f"acknowledge it on the opt-outs page by {format_moment(due)} "
                               "(10 business days)."],
           items=[f"Sale #{sale_id} of order #{order_id}" for sale_id, order_id in sales],
           link=path("buyer.opt_outs"), link_label="Acknowledge",
           data={"sale_ids": [sale_id for sale_id, _ in sales], "due_at": due.isoformat()})


# Erasure (app.services.privacy): a notice's words about a person go with them ------
# Their emails go whole, found by the leads they are about (`about_leads`).

def _told_for(accounts: set[int]) -> sa.ColumnElement[bool]:
    """Notices of the accounts' people, past ones too: a member removed since keeps
    what they were told."""
    return Notification.user_id.in_(sa.select(User.id).where(
        sa.or_(User.id.in_(accounts), User.account_holder_id.in_(accounts))))


def return_notes_erased(returns: list[tuple[int, int, int]], instead: str) -> None:
    """What people wrote on these returns ((return, buyer, seller) ids) was erased: an
    administrator's decision, which both sides were told, says `instead`."""
    for notice in db.session.scalars(sa.select(Notification).where(
            _told_for({party for _, *parties in returns for party in parties}),
            Notification.kind == Kind.RETURN_DECIDED,
            Notification.data["return_id"].as_integer().in_([r for r, _, _ in returns]),
            Notification.data["decided_by"].as_string() == "admin")):
        notice.body = DECIDED_BY["admin"].format(note=instead)


def spot_check_notes_erased(checks: list[tuple[int, int]]) -> None:
    """Notes on sampled leads of these checks ((check, seller) ids) were erased: the
    notices of their failure list the failing leads again, with the notes as they are
    now (the verdicts are final once a check is decided)."""
    notices = db.session.scalars(sa.select(Notification).where(
        _told_for({seller_id for _, seller_id in checks}),
        Notification.kind == Kind.SPOT_CHECK_DECIDED,
        Notification.data["check_id"].as_integer().in_([c for c, _ in checks]))).all()
    lines: dict[int, list[str]] = {}
    for check_id in {notice.data["check_id"] for notice in notices}:
        lines[check_id] = _shown([_failing_line(*row) for row in db.session.execute(
            sa.select(SpotCheckItem.lead_id, Lead.row_number, SpotCheckItem.verdict,
                      SpotCheckItem.note)
            .join(Lead, Lead.id == SpotCheckItem.lead_id)
            .where(SpotCheckItem.check_id == check_id, SpotCheckItem.verdict.in_(DEFECTS))
            .order_by(SpotCheckItem.position))])
    for notice in notices:
        notice.data = {**notice.data, "items": lines[notice.data["check_id"]]}


def delivery_errors_erased(sales: list[tuple[int, int, int]], instead: str) -> None:
    """What a buyer's system answered about these sales ((sale, order, buyer) ids) was
    erased: the notices that their delivery failed, which quote it, say `instead`."""
    for notice in db.session.scalars(sa.select(Notification).where(
            _told_for({buyer_id for _, _, buyer_id in sales}),
            Notification.kind == Kind.DELIVERY_FAILING,
            Notification.subject.in_({f"order:{order_id}" for _, order_id, _ in sales}),
            Notification.data["sale_id"].as_integer().in_([s for s, _, _ in sales]))):
        if said := notice.data.get("error"):
            notice.body = notice.body.replace(said, instead)
            notice.data = {**notice.data, "error": instead}


def _buyer_of(order_id: int) -> int:
    return db.session.scalar(sa.select(Order.buyer_id).where(Order.id == order_id))


def time_left_until(iso: str) -> str:
    """What is left now of a deadline stored in a notice's data (the list shows it)."""
    left = datetime.fromisoformat(iso) - datetime.now(timezone.utc)
    return time_left(left) if left > timedelta(0) else ""


def time_left(delta: timedelta) -> str:
    """3 days 4 hours; 5 hours 10 minutes; 12 minutes."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "less than a minute"
