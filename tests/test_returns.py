"""Returns (SPEC §7): window, reasons, automatic decisions, seller accept/contest,
admin decision, per-order cap, ledger reversal — and the web and API paths."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.errors import Conflict, ValidationFailed
from app.core import figures
from app.extensions import db
from app.models import AccountKind, Lead, Return, ReturnStatus, Role, Sale
from app.services import earnings, ledger, returns
from app.market import jobs
from tests.conftest import csrf_token, log_in, make_user
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller
from tests.query_count import counted


def _market(count: int = 10, price: int = 1000, **order_kwargs):
    seller = verified_seller()
    buyer = funded_buyer(100_000)
    live_leads(seller, [person(i) for i in range(count)])
    order = place(buyer, price, count, **order_kwargs)
    jobs.fill_order(order.id)
    db.session.commit()
    return seller, buyer, order, sales_of(order)


def _balances(seller, buyer):
    s, b = ledger.balance_for(seller), ledger.balance_for(buyer)
    commission = ledger.balance_of(ledger.account(AccountKind.PLATFORM_COMMISSION))
    return s.pending, s.available, b.available, commission


def test_seller_accepts_a_return_and_the_sale_is_reversed(app):
    seller, buyer, order, sales = _market()
    before = _balances(seller, buyer)
    item = returns.open_return(buyer, sales[0].id, "wrong_number", "nobody answers")
    db.session.commit()
    assert item.status is ReturnStatus.AWAITING_SELLER and item.seller_deadline
    assert _balances(seller, buyer) == before  # nothing moves until it is decided

    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    pending, available, buyer_available, commission = _balances(seller, buyer)
    assert buyer_available == before[2] + 1000
    assert pending == before[0] - 800 and commission == before[3] - 200
    assert item.refund == 1000 and item.decided_by == "seller"
    assert ledger.reconcile().ok


def test_contested_return_goes_to_an_admin_who_rejects_it(app):
    seller, buyer, order, sales = _market()
    admin = make_user(Role.ADMIN)
    item = returns.open_return(buyer, sales[1].id, "fake")
    returns.seller_respond(seller, item.id, accept=False, note="We called them: real person")
    assert item.status is ReturnStatus.CONTESTED
    with pytest.raises(ValidationFailed):
        returns.admin_decide(admin, item.id, False, note="  ")
    before = _balances(seller, buyer)
    returns.admin_decide(admin, item.id, False, note="Recording shows consent")
    db.session.commit()
    assert item.status is ReturnStatus.REJECTED and _balances(seller, buyer) == before
    with pytest.raises(Conflict):  # one return per sale
        returns.open_return(buyer, sales[1].id, "fake")


def test_unanswered_returns_are_accepted_after_the_deadline(app):
    seller, buyer, order, sales = _market()
    item = returns.open_return(buyer, sales[0].id, "no_consent")
    db.session.commit()
    assert returns.accept_overdue() == 0
    assert returns.accept_overdue(datetime.now(timezone.utc) + timedelta(days=4)) == 1
    db.session.refresh(item)
    assert item.status is ReturnStatus.ACCEPTED and item.decided_by == "timeout"


def test_not_matching_is_decided_by_the_system_both_ways(app):
    seller, buyer, order, sales = _market(filters={"genders": ["f"]})
    refused = returns.open_return(buyer, sales[0].id, "not_matching")
    assert refused.status is ReturnStatus.REJECTED and refused.decided_by == "system"
    # The buyer narrows the order afterwards; the sale was judged by the filters it had.
    lead = sales[1].lead
    lead.gender = "m"  # as if the lead did not match when sold
    accepted = returns.open_return(buyer, sales[1].id, "not_matching")
    assert accepted.status is ReturnStatus.ACCEPTED and accepted.refund == 1000


def test_a_duplicate_the_system_can_see_is_accepted(app):
    seller_a, seller_b = verified_seller(), verified_seller()
    buyer = funded_buyer(100_000)
    # Shared copies: a person sold exclusively would have no second buyer at all.
    first = live_leads(seller_a, [person(1)], cap=2)
    order = place(buyer, 1000, 5, lookback_days=0)  # the order lets the same person through
    jobs.fill_order(order.id)
    again = live_leads(seller_b, [person(1)], cap=2)  # the same person, from another seller
    jobs.match_leads([lead.id for lead in again])
    db.session.commit()
    later = db.session.scalar(sa.select(Sale).where(Sale.lead_id == again[0].id))
    assert later is not None and first
    item = returns.open_return(buyer, later.id, "duplicate")
    assert item.status is ReturnStatus.ACCEPTED and "earlier in sale" in item.decision_note


def test_return_window_and_cap(app):
    app.config["RETURN_CAP_BP"] = 1500
    seller, buyer, order, sales = _market(count=10)
    assert returns.return_cap(order) == 2  # 15% of 10, rounded up
    returns.open_return(buyer, sales[0].id, "fake")
    returns.open_return(buyer, sales[1].id, "fake")
    with pytest.raises(ValidationFailed) as capped:
        returns.open_return(buyer, sales[2].id, "fake")
    assert capped.value.code == "return_cap_reached"
    late = datetime.now(timezone.utc) + timedelta(days=8)
    with pytest.raises(ValidationFailed) as closed:
        returns.open_return(buyer, sales[3].id, "fake", now=late)
    assert closed.value.code == "window_closed"


def test_open_returns_hold_the_sellers_money_until_decided(app):
    seller, buyer, order, sales = _market(count=3)
    item = returns.open_return(buyer, sales[0].id, "fake")
    db.session.commit()
    later = datetime.now(timezone.utc) + timedelta(days=8)
    assert earnings.release_cleared(later) == 1600  # two sales clear, the returned one waits
    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    assert earnings.release_cleared(later) == 0  # a reversed sale never clears
    assert ledger.balance_for(seller).pending == 0 and ledger.reconcile().ok


def test_reversal_after_release_becomes_a_debt_recovered_from_later_earnings(app):
    seller, buyer, order, sales = _market(count=2)
    earnings.release_cleared(datetime.now(timezone.utc) + timedelta(days=8))
    db.session.commit()
    # The seller's available money leaves (as if paid out), then a batch check fails.
    ledger.manual_debit(seller, 1600, reason="paid out", actor=None)
    returns.return_batch_sales(sales[0].lead.batch_id, actor=None)
    db.session.commit()
    receivable = ledger.account(AccountKind.SELLER_RECEIVABLE, seller)
    assert ledger.balance_of(receivable) == -1600 and ledger.balance_for(seller).available == 0
    assert ledger.balance_for(buyer).available == 100_000 and ledger.reconcile().ok
    # New earnings pay the debt first.
    other_buyer = funded_buyer(10_000)
    leads = live_leads(seller, [person(50 + i) for i in range(3)])
    place(other_buyer, 1000, 3)
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    earnings.release_cleared(datetime.now(timezone.utc) + timedelta(days=9))
    assert ledger.balance_of(receivable) == 0 and ledger.balance_for(seller).available == 800


def test_buyer_returns_in_the_browser_session_and_seller_answers(app, client):
    seller, buyer, order, sales = _market(count=4)
    buyer_client, seller_client = app.test_client(), app.test_client()
    log_in(buyer_client, buyer)
    log_in(seller_client, seller)
    buyer.timezone = "Asia/Tokyo"  # the seller's deadline is given on the buyer's clock
    db.session.commit()
    page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert f"/buyer/sales/{sales[0].id}/return" in page
    url = f"/buyer/sales/{sales[0].id}/return"
    response = buyer_client.post(url, data={"csrf_token": csrf_token(buyer_client, url),
                                            "reason": "wrong_number", "note": "dead line"},
                                 follow_redirects=True)
    item = db.session.scalar(sa.select(Return))
    deadline = item.seller_deadline.replace(tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (f"Return sent to the seller, who can answer until {deadline:%Y-%m-%d %H:%M} JST"
            in response.get_data(as_text=True))
    listing = seller_client.get("/seller/returns").get_data(as_text=True)
    assert "dead line" in listing and str(sales[0].id) in listing
    token = csrf_token(seller_client, "/seller/returns")
    seller_client.post(f"/seller/returns/{item.id}/accept", data={"csrf_token": token})
    db.session.refresh(item)
    assert item.status is ReturnStatus.ACCEPTED
    assert "accepted" in buyer_client.get("/buyer/returns").get_data(as_text=True)


def test_a_return_without_a_reason_lists_the_forms_labels(app):
    seller, buyer, order, sales = _market(count=4)
    client = app.test_client()
    log_in(client, buyer)
    url = f"/buyer/sales/{sales[0].id}/return"
    page = client.post(url, data={"csrf_token": csrf_token(client, url), "reason": ""},
                       follow_redirects=True).get_data(as_text=True)
    assert "Choose a reason: “Wrong or dead number”, “Fake person”" in page
    assert "wrong_number" not in page.split('role="alert"', 1)[-1].split("</div>", 1)[0]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Return)) == 0


def test_the_return_form_says_how_many_may_be_returned_and_until_when_before_submitting(app):
    seller, buyer, order, sales = _market(count=4)  # 15% of 4: one return
    client = app.test_client()
    log_in(client, buyer)
    page = client.get(f"/buyer/sales/{sales[0].id}/return").get_data(as_text=True)
    said = " ".join(page.split('id="return-allowance">', 1)[1].split("</div>", 1)[0].split())
    closes = sales[0].created_at + earnings.return_window()
    assert f"until <strong>{closes:%Y-%m-%d %H:%M} UTC</strong> (6 days 23 hours left)" in said
    assert "up to <strong>1</strong> of its 4 leads; 0 returned so far, so " \
           "<strong>1</strong> more is possible" in said
    assert "Return this lead</button>" in page
    item = returns.open_return(buyer, sales[0].id, "fake")
    db.session.commit()
    listed = client.get("/buyer/returns").get_data(as_text=True)
    assert f"seller answers by {item.seller_deadline:%Y-%m-%d %H:%M} UTC" in listed
    page = client.get(f"/buyer/sales/{sales[1].id}/return").get_data(as_text=True)
    assert "1 of its 4 leads, and 1 is returned already: no more can be returned" in page
    assert "Return this lead</button>" not in page
    sales[2].created_at -= earnings.return_window() + timedelta(minutes=1)
    figures.changed(buyer.id)  # a sale made older here
    db.session.commit()
    page = client.get(f"/buyer/sales/{sales[2].id}/return").get_data(as_text=True)
    assert "Returns for this lead closed on" in page and "Return this lead</button>" not in page


def test_returns_api(app, client, api_key_for):
    seller, buyer, order, sales = _market(count=4)
    headers, seller_headers = api_key_for(buyer), api_key_for(seller)
    bad = client.post("/api/v1/returns", json={"sale_id": sales[0].id, "reason": "boring"},
                      headers=headers)
    assert bad.status_code == 422
    created = client.post("/api/v1/returns", json={"sale_id": sales[0].id, "reason": "fake"},
                          headers=headers)
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "awaiting_seller" and body["sale_id"] == sales[0].id
    assert client.post("/api/v1/returns", json={"sale_id": sales[0].id, "reason": "fake"},
                       headers=headers).status_code == 409
    other_buyer = funded_buyer()
    assert client.post("/api/v1/returns", json={"sale_id": sales[1].id, "reason": "fake"},
                       headers=api_key_for(other_buyer)).status_code == 404
    assert client.post(f"/api/v1/returns/{body['id']}/contest", json={"note": "real"},
                       headers=headers).status_code == 403
    answer = client.post(f"/api/v1/returns/{body['id']}/contest", json={"note": "real"},
                         headers=seller_headers)
    assert answer.status_code == 200 and answer.get_json()["status"] == "contested"
    listed = client.get("/api/v1/returns", headers=seller_headers).get_json()
    assert [r["id"] for r in listed] == [body["id"]]


def test_admin_decides_contested_returns_in_the_queue(app, admin_client):
    seller, buyer, order, sales = _market(count=4)
    item = returns.open_return(buyer, sales[0].id, "fake", "made up name")
    returns.seller_respond(seller, item.id, accept=False, note="has consent recording")
    db.session.commit()
    page = admin_client.get("/admin/returns").get_data(as_text=True)
    assert "made up name" in page and "has consent recording" in page
    token = csrf_token(admin_client, "/admin/returns")
    admin_client.post(f"/admin/returns/{item.id}/accept",
                      data={"csrf_token": token, "note": "No recording was produced"})
    db.session.refresh(item)
    assert item.status is ReturnStatus.ACCEPTED and item.decided_by == "admin"
    assert ledger.reconcile().ok


def test_order_page_shows_returned_leads_and_the_refund(app):
    seller, buyer, order, sales = _market(count=3)
    item = returns.open_return(buyer, sales[0].id, "fake")
    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    client = app.test_client()
    log_in(client, buyer)
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "1 returned, $10.00 back on your balance" in page
    assert f"/buyer/sales/{sales[0].id}/return" not in page  # no second return offered
    assert f"/buyer/sales/{sales[1].id}/return" in page


def test_a_lead_marked_converted_cannot_be_returned(app):
    from app.services import outcomes

    seller, buyer, order, sales = _market(count=3)
    outcomes.record(buyer, sales[0].id, "converted", 5000)
    with pytest.raises(ValidationFailed) as refused:
        returns.open_return(buyer, sales[0].id, "fake")
    assert refused.value.code == "converted_lead"
    db.session.commit()
    client = app.test_client()
    log_in(client, buyer)
    page = client.get(f"/buyer/sales/{sales[0].id}/return").get_data(as_text=True)
    assert "You marked this lead converted" in page  # said before the form is filled in
    assert "Return this lead</button>" not in page
    outcomes.record(buyer, sales[0].id, "bad", None)  # a mistake, corrected first
    assert returns.open_return(buyer, sales[0].id, "fake").status is ReturnStatus.AWAITING_SELLER


def _contest(seller, buyer, sales, reason: str = "fake") -> list[Return]:
    items = []
    for sale in sales:
        item = returns.open_return(buyer, sale.id, reason, "made up name")
        returns.seller_respond(seller, item.id, accept=False, note="has consent recording")
        items.append(item)
    db.session.commit()
    return items


def test_contested_returns_show_the_lead_and_both_parties_and_the_view_is_audited(
        app, admin_client, admin):
    from app.models import AuditEvent
    from app.services.crypto import current_vault

    seller, buyer, order, sales = _market(count=4)
    seller.display_name, buyer.display_name = "Acme Leads", "Sunrise Solar"
    [item] = _contest(seller, buyer, sales[:1])
    lead = db.session.get(Sale, item.sale_id).lead
    contact = current_vault().open_contact(lead.contact_enc)
    page = admin_client.get("/admin/returns").get_data(as_text=True)
    card = page[page.index(f'id="return-{item.id}"'):]
    assert contact["email"] in card and contact["phone"] in card and contact["first_name"] in card
    assert "Acme Leads" in card and "Sunrise Solar" in card and buyer.email in card
    assert f"Lead #{lead.id}" in card and lead.source_url in card
    assert lead.region == "US-CA" and "California" in card and "US-CA" not in card
    assert "made up name" in card and "has consent recording" in card
    admin_client.get("/admin/returns")
    views = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "returns.contacts_viewed")).all()
    assert len(views) == 2 and all(v.actor_id == admin.id for v in views)
    assert views[0].details == {"return_ids": [item.id], "lead_ids": [lead.id]}
    # An empty queue shows no contacts, so its view is not a view of personal data.
    returns.admin_decide(admin, item.id, False, note="recording heard")
    db.session.commit()
    assert "No contested returns." in admin_client.get("/admin/returns").get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "returns.contacts_viewed")) == 2


def test_the_contested_returns_queue_runs_the_same_queries_however_long(app, admin_client):
    from tests.query_count import queries_for

    seller, buyer, order, sales = _market(count=12)
    _contest(seller, buyer, sales[:1])
    one = queries_for(admin_client, "/admin/returns")
    _contest(seller, buyer, sales[1:2])
    other_seller, other_buyer, _, other_sales = _market(count=6)
    _contest(other_seller, other_buyer, other_sales[:2])
    assert queries_for(admin_client, "/admin/returns") == one


def test_a_contest_needs_a_reason_that_the_admin_and_the_buyer_read(app, client, admin_client,
                                                                      api_key_for):
    seller, buyer, order, sales = _market(count=14)
    web_item = returns.open_return(buyer, sales[0].id, "fake", "made up name")
    api_item = returns.open_return(buyer, sales[1].id, "fake")
    db.session.commit()
    seller_client, buyer_client = app.test_client(), app.test_client()
    log_in(seller_client, seller)
    log_in(buyer_client, buyer)
    url = f"/seller/returns/{web_item.id}/contest"
    assert 'name="note" required' in seller_client.get("/seller/returns").get_data(as_text=True)
    page = seller_client.post(url, data={"csrf_token": csrf_token(seller_client, "/seller/returns"),
                                         "note": "   "}, follow_redirects=True)
    assert "Say why you contest the return" in page.get_data(as_text=True)
    db.session.refresh(web_item)
    assert web_item.status is ReturnStatus.AWAITING_SELLER
    seller_client.post(url, data={"csrf_token": csrf_token(seller_client, "/seller/returns"),
                                  "note": "We called her: she filled the form herself"})
    db.session.refresh(web_item)
    assert web_item.status is ReturnStatus.CONTESTED

    contest = f"/api/v1/returns/{api_item.id}/contest"
    for body in (None, {}, {"note": " "}):
        refused = client.post(contest, json=body, headers=api_key_for(seller))
        assert refused.status_code == 422
        assert refused.get_json()["error"]["code"] == "reason_required"
    assert client.post(contest, json={"note": "x" * 2001},
                       headers=api_key_for(seller)).status_code == 422
    assert client.post(contest, json={"note": "Recording of the call"},
                       headers=api_key_for(seller)).status_code == 200

    queue = admin_client.get("/admin/returns").get_data(as_text=True)
    assert "We called her: she filled the form herself" in queue
    assert "Recording of the call" in queue
    listed = buyer_client.get("/buyer/returns").get_data(as_text=True)
    assert "We called her" in listed
    # The seller has answered: the buyer now waits for an administrator, not for them.
    assert "seller answers by" not in listed and "an administrator decides" in listed


def test_the_sellers_returns_list_says_which_lead_and_by_when(app):
    from tests.query_count import queries_for

    seller, buyer, order, sales = _market(count=14)
    item = returns.open_return(buyer, sales[2].id, "wrong_number", "the line is dead")
    db.session.commit()
    lead = db.session.get(Lead, sales[2].lead_id)
    seller_client = app.test_client()
    log_in(seller_client, seller)
    page = seller_client.get("/seller/returns").get_data(as_text=True)
    # the file's line (the header is line 1) and the name of the person on it
    assert f"test.csv</a>, row {lead.row_number}</div>" in page
    assert f"<strong>Person{lead.row_number - 2}</strong>" in page
    assert "Wrong or dead number" in page and "the line is dead" in page
    assert f"Answer by <strong>{item.seller_deadline:%Y-%m-%d %H:%M} UTC</strong>" in page
    one = queries_for(seller_client, "/seller/returns")
    returns.open_return(buyer, sales[3].id, "fake")
    db.session.commit()
    assert queries_for(seller_client, "/seller/returns") == one


def test_a_failed_spot_checks_refunds_look_for_no_seller_notice_per_sale(app):
    """No seller was asked to answer the returns a failed spot-check makes: refunding the
    batch reads no notice per sale (one query each, before)."""
    _, _, _, sales = _market(count=3)
    with counted() as statements:
        assert returns.return_batch_sales(sales[0].lead.batch_id, actor=None) == 3
    assert [s for s in statements if s.startswith("SELECT notifications.")] == []
    assert all(not item.filed_by_buyer for item in db.session.scalars(sa.select(Return)))
