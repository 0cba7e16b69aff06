"""Inventory comes freshest first (SPEC §4 rule 4) through ix_leads_status_consent_day:
ordered by UTC day, then consent time, then id, which is the order of (consent time,
id), and the same when an order's fill pages through it with a cursor."""
from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa

from app.extensions import db
from app.market import snapshot
from app.models import Lead
from app.models.leads import utc_day
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).date()
    return datetime.combine(today - timedelta(days=days_ago), time(), timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pages(slot, now, size):
    after, seen = None, []
    while page := snapshot.inventory_for(slot, now, after, size):
        seen += [lead.id for lead in page]
        after = (page[-1].consent_at, page[-1].id)
    return seen


def test_inventory_pages_freshest_first_across_utc_days(app):
    edge = _midnight(3)
    consents = [
        _stamp(edge - timedelta(seconds=1)),  # the day before, last second
        _stamp(edge),  # the day itself, first second
        _stamp(edge + timedelta(hours=5)),
        _stamp(edge + timedelta(hours=5)),  # the same time: the later id comes first
        (edge + timedelta(hours=1)).astimezone(timezone(timedelta(hours=3))).isoformat(),
        _stamp(edge + timedelta(days=1, minutes=1)),
        _stamp(edge - timedelta(days=2, hours=3)),
        _stamp(edge + timedelta(hours=23, minutes=59, seconds=59)),
    ]
    # Stored in another order than their consent times.
    seller = verified_seller()
    leads = live_leads(seller, [person(i, consent_at=c) for i, c in enumerate(consents)])
    assert len(leads) == len(consents)
    expected = [lead.id for lead in sorted(leads, key=lambda lead: (lead.consent_at, lead.id),
                                           reverse=True)]
    order = place(funded_buyer(), 300, 20)
    now = datetime.now(timezone.utc)
    slot = snapshot.load_book(now, [order.id]).slots[order.id]
    assert [lead.id for lead in snapshot.inventory_for(slot, now, None, 100)] == expected
    for size in (1, 2, 3):
        assert _pages(slot, now, size) == expected

    # A lookback window counts in consent time, not in whole days.
    window = place(funded_buyer(), 300, 20, filters={"max_age_days": 3})
    slot = snapshot.load_book(now, [window.id]).slots[window.id]
    cutoff = now - timedelta(days=3)
    assert _pages(slot, now, 2) == [i for i in expected
                                    if db.session.get(Lead, i).consent_at >= cutoff]


def test_utc_day_is_the_utc_date_on_either_backend(app):
    seller = verified_seller()
    moment = _midnight(2) - timedelta(minutes=30)  # 02:30 the next day at UTC+3
    [lead] = live_leads(seller, [person(1, consent_at=moment.astimezone(
        timezone(timedelta(hours=3))).isoformat())])
    day = db.session.scalar(sa.select(utc_day(Lead.consent_at)).where(Lead.id == lead.id))
    assert str(day) == moment.date().isoformat()
