"""Companies (SPEC §2): `flask users create --company` and `flask users invite`, the
emailed invitation (read from a real SMTP server on loopback, once, until it expires),
members sharing the company's balance, orders, batches and reports on the web and
through their own API keys, the audit log naming the member, an owner removing a
member (locked out at once), and no member reaching another company's things."""
import csv
import io
import re
from datetime import date, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from app.consent import builder
from app.extensions import db
from app.market import jobs
from app.models import (
    AccountKind, AccountLink, AuditEvent, CompanyRole, LinkPurpose, Notification,
    NotificationKind, Order, OrderStatus, Role, TrustLevel, User,
)
from app.models.types import utcnow
from app.money import receipts
from app.people import account_links, companies, membership
from app.services import bank_transfers, ledger, manual_payouts, returns
from tests.conftest import TEST_PASSWORD, csrf_token, log_in, make_user
from tests.market_helpers import live_leads, person, place, sales_of
from tests.smtp_server import bodies

MEMBER_PASSWORD = "a member's own passphrase"


def company(role: Role, name: str, **fields) -> User:
    owner = make_user(role, **fields)
    companies.name_company(owner, name)
    db.session.commit()
    return owner


def member_of(account: User, email: str, role: CompanyRole = CompanyRole.MEMBER) -> User:
    """Someone invited into the company who accepted (the link taken from a fresh issue:
    the emailed one is tested below)."""
    invitee = companies.invite(account, email, role, actor=account)
    secret = account_links.issue(invitee, LinkPurpose.INVITATION)
    user = companies.accept(secret, MEMBER_PASSWORD, display_name=email.split("@")[0])
    db.session.commit()
    return user


def client_of(app, user: User):
    client = app.test_client()
    log_in(client, user, MEMBER_PASSWORD if user.account_holder_id else TEST_PASSWORD)
    return client


def _user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == email))


def _invitation_path(message) -> str:
    text, html = bodies(message)
    [link] = re.findall(r"http://\S+/auth/invitation/\S+", text)
    assert link in html
    return urlsplit(link).path


def _accept(client, path: str, password: str = MEMBER_PASSWORD, name: str = "Mia",
            browser_zone: str = "Asia/Tokyo"):
    page = client.get(path, follow_redirects=True)
    token = csrf_token(client, "/auth/invitation/accept")
    return page, client.post("/auth/invitation/accept", data={
        "display_name": name, "password": password, "confirm": password, "csrf_token": token,
        "timezone": browser_zone})


# The CLI and the emailed invitation ------------------------------------------------

def test_cli_creates_a_company_owner_and_invites_a_member_by_email(app, client, smtp_server):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--email", "boss@acme.example",
                                 "--password", TEST_PASSWORD, "--role", "buyer",
                                 "--company", "Acme Leads"])
    assert result.exit_code == 0, result.output
    assert "owner of Acme Leads" in result.output
    owner = _user("boss@acme.example")
    assert owner.company_name == "Acme Leads" and owner.company_role is CompanyRole.OWNER
    again = runner.invoke(args=["users", "create", "--email", "other@acme.example",
                                "--password", TEST_PASSWORD, "--role", "buyer",
                                "--company", "Acme Leads"])
    assert again.exit_code != 0 and "exists already" in again.output
    assert _user("other@acme.example") is None

    result = runner.invoke(args=["users", "invite", "--company", "Acme Leads",
                                 "--email", "Mia@Acme.example"])
    assert result.exit_code == 0, result.output
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "mia@acme.example"
    assert "Join Acme Leads" in message["Subject"]
    invitee = _user("mia@acme.example")
    assert not invitee.is_active and invitee.account_holder_id == owner.id
    assert runner.invoke(args=["users", "invite", "--company", "Nobody Inc",
                               "--email", "x@acme.example"]).exit_code != 0

    path = _invitation_path(message)
    secret = path.rsplit("/", 1)[1]
    assert secret not in db.session.scalar(sa.select(AccountLink.token_hash).where(
        AccountLink.user_id == invitee.id))
    # The invitee cannot sign in before accepting.
    response = client.post("/auth/login", data={"email": "mia@acme.example",
                                                 "password": TEST_PASSWORD,
                                                 "csrf_token": csrf_token(client)})
    assert "Wrong email or password" in response.get_data(as_text=True)

    page, response = _accept(client, path, password="short")
    assert "Join Acme Leads" in page.get_data(as_text=True)
    assert response.status_code == 200  # too short: the link is not spent
    page, response = _accept(client, path)
    assert response.status_code == 302
    dashboard = client.get("/buyer/", follow_redirects=True).get_data(as_text=True)
    assert "Welcome to Acme Leads" in dashboard and 'id="verify-banner"' not in dashboard
    member = _user("mia@acme.example")
    assert member.is_active and member.email_verified and member.display_name == "Mia"
    # Their own zone, from their browser as at sign-up: pages show them times in it.
    assert 'data-browser-timezone' in page.get_data(as_text=True)
    assert member.timezone == "Asia/Tokyo" and owner.timezone == "UTC"
    assert membership.account_of(member).id == owner.id
    joined = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "company.member_joined"))
    assert joined.actor_id == member.id

    other = app.test_client()
    page = other.get(path, follow_redirects=True).get_data(as_text=True)
    assert "used already" in page  # single use
    assert "Join Acme Leads" not in page


def test_an_invitation_expires_and_a_newer_one_voids_it(app, client, smtp_server):
    owner = company(Role.SELLER, "Field Sellers")
    companies.invite(owner, "late@example.com", actor=owner)
    db.session.commit()
    [first] = smtp_server.wait_for(1)
    db.session.execute(sa.update(AccountLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    page = client.get(_invitation_path(first), follow_redirects=True).get_data(as_text=True)
    assert "expired" in page

    smtp_server.clear()
    companies.invite(owner, "late@example.com", actor=owner)  # sent again
    db.session.commit()
    [second] = smtp_server.wait_for(1)
    companies.invite(owner, "late@example.com", actor=owner)
    db.session.commit()
    smtp_server.wait_for(2)
    page = client.get(_invitation_path(second), follow_redirects=True).get_data(as_text=True)
    assert "newer one was sent" in page
    assert not _user("late@example.com").is_active


def test_an_address_with_an_account_cannot_be_invited(app):
    owner = company(Role.BUYER, "Buyers Co")
    someone = make_user(Role.BUYER)
    with pytest.raises(Exception, match="already has a LeadX account"):
        companies.invite(owner, someone.email, actor=owner)
    db.session.rollback()
    member = member_of(owner, "m@example.com")
    with pytest.raises(Exception, match="already has a LeadX account"):
        companies.invite(owner, member.email, actor=owner)
    db.session.rollback()
    with pytest.raises(Exception, match="Only an owner"):
        companies.invite(owner, "x@example.com", actor=member)


# Members share the company's things -------------------------------------------------

def _seller_company():
    owner = company(Role.SELLER, "Sellers Ltd", trust_level=TrustLevel.VERIFIED)
    return owner, member_of(owner, "sam@sellers.example")


def _buyer_company(funds: int = 100_000):
    owner = company(Role.BUYER, "Buyers Ltd")
    ledger.manual_credit(owner, funds, reason="test funds", actor=None)
    db.session.commit()
    return owner, member_of(owner, "bea@buyers.example")


def test_a_member_sees_and_manages_the_company_batches_audited_under_their_name(app):
    owner, member = _seller_company()
    batch_id = live_leads(owner, [person(1), person(2)])[0].batch_id
    client = client_of(app, member)
    assert f"/seller/batches/{batch_id}" in client.get("/seller/batches").get_data(as_text=True)
    assert client.get(f"/seller/batches/{batch_id}").status_code == 200
    token = csrf_token(client, "/seller/batches")
    assert client.post(f"/seller/batches/{batch_id}/pause",
                       data={"csrf_token": token}).status_code == 302
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "batch.paused"))
    assert event.actor_id == member.id and event.subject_id == batch_id
    # The owner's own actions stay under the owner's name.
    owner_client = client_of(app, owner)
    assert owner_client.post(f"/seller/batches/{batch_id}/resume", data={
        "csrf_token": csrf_token(owner_client, "/seller/batches")}).status_code == 302
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "batch.resumed"))
    assert event.actor_id == owner.id


def test_a_member_places_orders_from_the_company_balance_on_the_web_and_by_api(app, api_key_for):
    owner, member = _buyer_company(50_000)
    seller = company(Role.SELLER, "Seller Co", trust_level=TrustLevel.VERIFIED)
    live_leads(seller, [person(i) for i in range(3)])
    owner_order = place(owner, 1_000, 1)

    client = client_of(app, member)
    assert "$500.00" in client.get("/buyer/balance").get_data(as_text=True)
    assert client.get(f"/buyer/orders/{owner_order.id}").status_code == 200
    token = csrf_token(client, "/buyer/orders")
    assert client.post(f"/buyer/orders/{owner_order.id}/pause",
                       data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Order, owner_order.id).status is OrderStatus.PAUSED

    headers = api_key_for(member)
    response = client.post("/api/v1/orders", json={"price": 1_000, "quantity": 2},
                           headers=headers)
    assert response.status_code == 201, response.json
    order = db.session.get(Order, response.json["id"])
    assert order.buyer_id == owner.id  # the company's order, held on its balance
    jobs.fill_order(order.id)
    db.session.commit()
    assert len(sales_of(order)) == 2
    assert client.get("/api/v1/balance", headers=headers).json["available"] == \
        ledger.balance_for(owner).available == 50_000 - 1_000 - 2_000
    listed = {o["id"] for o in client.get("/api/v1/orders", headers=headers).json}
    assert listed == {owner_order.id, order.id}
    # The owner sees the member's order, and the filled notice reached both of them.
    assert client_of(app, owner).get(f"/buyer/orders/{order.id}").status_code == 200
    told = set(db.session.scalars(sa.select(Notification.user_id).where(
        Notification.kind == NotificationKind.ORDER_FILLED)))
    assert told == {owner.id, member.id}
    # The key is the member's: the member's own notifications, not the owner's list.
    assert client.get("/api/v1/notifications", headers=headers).status_code == 200


def test_a_removed_member_is_locked_out_at_once(app, api_key_for):
    owner, member = _buyer_company()
    headers = api_key_for(member)
    client = client_of(app, member)
    assert client.get("/buyer/").status_code == 200
    assert client.get("/api/v1/orders", headers=headers).status_code == 200

    owner_client = client_of(app, owner)
    page = owner_client.get("/auth/team").get_data(as_text=True)
    assert member.email in page and "data-confirm" in page
    # The account's own user is not a removable member.
    response = owner_client.post(f"/auth/team/{owner.id}/remove",
                                 data={"csrf_token": csrf_token(owner_client, "/auth/team")})
    assert response.status_code == 404
    response = owner_client.post(f"/auth/team/{member.id}/remove",
                                 data={"csrf_token": csrf_token(owner_client, "/auth/team")},
                                 follow_redirects=True)
    assert "no longer has access" in response.get_data(as_text=True)

    assert client.get("/buyer/").status_code == 302  # the session is void
    assert client.get("/api/v1/orders", headers=headers).status_code == 401
    fresh = app.test_client()
    response = fresh.post("/auth/login", data={"email": member.email, "password": MEMBER_PASSWORD,
                                               "csrf_token": csrf_token(fresh)})
    assert "Wrong email or password" in response.get_data(as_text=True)
    removed = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "company.member_removed"))
    assert removed.actor_id == owner.id and removed.subject_id == member.id
    assert member.email not in owner_client.get("/auth/team").get_data(as_text=True)


def test_only_owners_invite_and_remove_on_the_company_page(app, smtp_server):
    owner, member = _buyer_company()
    client = client_of(app, member)
    page = client.get("/auth/team").get_data(as_text=True)
    assert "Buyers Ltd" in page and 'id="invite-form"' not in page
    response = client.post("/auth/team", data={"email": "x@example.com", "role": "member",
                                               "csrf_token": csrf_token(client, "/auth/team")})
    assert _user("x@example.com") is None and response.status_code == 200
    other = member_of(owner, "other@buyers.example")
    response = client.post(f"/auth/team/{other.id}/remove",
                           data={"csrf_token": csrf_token(client, "/auth/team")},
                           follow_redirects=True)
    assert "Only an owner" in response.get_data(as_text=True)
    assert _user(other.email).is_active

    # A buyer on their own names the company with the first invitation.
    solo = make_user(Role.BUYER, display_name="Solo Trading")
    solo_client = client_of(app, solo)
    # The name they signed up with ("name or company") is offered as the company's.
    assert 'name="company" type="text" value="Solo Trading"' in solo_client.get(
        "/auth/team").get_data(as_text=True)
    response = solo_client.post("/auth/team", data={
        "company": "Solo Trading", "email": "first@solo.example", "role": "owner",
        "csrf_token": csrf_token(solo_client, "/auth/team")}, follow_redirects=True)
    assert "Invitation sent to first@solo.example" in response.get_data(as_text=True)
    assert _user(solo.email).company_name == "Solo Trading"
    assert _user("first@solo.example").company_role is CompanyRole.OWNER
    smtp_server.wait_for(1)


# Nobody reaches another company's things -------------------------------------------

def _world():
    """Company B (a seller and a buyer company, each with a member) with a batch, an
    order filled from it, a sale, a return, receipts and a manual payout; company A's
    members, each in a company of the same role."""
    admin = make_user(Role.ADMIN)
    b_seller, b_seller_member = _seller_company()
    b_buyer, b_buyer_member = _buyer_company()
    leads = live_leads(b_seller, [person(i) for i in range(3)])
    order = place(b_buyer, 1_000, 2)
    jobs.fill_order(order.id)
    db.session.commit()
    sale = sales_of(order)[0]
    item = returns.open_return(b_buyer, sale.id, "wrong_number", "nobody answers")
    transfer = bank_transfers.record_transfer(
        reference=bank_transfers.reference_for(b_buyer), amount=10_000,
        received_on=date.today(), bank_transaction_id="BANK-IDOR-1", actor=admin)
    ledger.post("test_sale", [  # cleared earnings to pay out
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, b_buyer), -3_000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, b_seller), 3_000)])
    payout = manual_payouts.record_payout(b_seller, amount=100, paid_on=date.today(),
                                          bank_transaction_id="OUT-IDOR-1", actor=admin,
                                          destination="DE89 3704 0044 0532 0130 00")
    db.session.commit()
    buyer_receipt = receipts.receipts_for(b_buyer)[0].number
    seller_receipt = receipts.receipts_for(b_seller)[0].number
    assert transfer and payout
    a_seller = company(Role.SELLER, "A Sellers", trust_level=TrustLevel.VERIFIED)
    a_buyer = company(Role.BUYER, "A Buyers")
    lead_form = builder.create_form(b_seller, builder.FormSpec(
        name="B's form", fields=[{"name": "email", "required": True}], consent_text="I agree.",
        disclosed_buyers="Insurers", default_country="US", floor_price=0, cap=1))
    db.session.commit()
    ids = {"order_id": order.id, "batch_id": leads[0].batch_id, "sale_id": sale.id,
           "return_id": item.id, "payout_id": payout.id, "topup_id": 0, "delivery_id": 0,
           "lead_id": sale.lead_id,  # sold to B: its seller and buyer both see it
           "form_id": lead_form.id}
    return {
        "ids": ids, "buyer_receipt": buyer_receipt, "seller_receipt": seller_receipt,
        "b": {Role.SELLER: b_seller_member, Role.BUYER: b_buyer_member},
        "a": {Role.SELLER: member_of(a_seller, "al@a-sellers.example"),
              Role.BUYER: member_of(a_buyer, "ann@a-buyers.example")},
    }


def _routes_with_ids(app, prefix: str):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(prefix) and re.search(r"<(?:\w+:)?\w+_id>", rule.rule):
            yield rule


def _url(rule, ids) -> str:
    path = re.sub(r"<any\((\w+)[^)]*\):\w+>", lambda m: m.group(1), rule.rule)
    return re.sub(r"<(?:(?:int|bigid):)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), path)


def test_a_member_of_another_company_gets_404_on_every_route_with_an_id(app, api_key_for):
    world = _world()
    ids = world["ids"]
    checked = 0
    for role, area in ((Role.BUYER, "/buyer/"), (Role.SELLER, "/seller/")):
        outsider, insider = client_of(app, world["a"][role]), client_of(app, world["b"][role])
        token = csrf_token(outsider, "/auth/password")
        for rule in _routes_with_ids(app, area):
            url = _url(rule, ids)
            method = "GET" if "GET" in rule.methods else "POST"
            data = {"csrf_token": token, "reason": "fake", "status": "converted", "revenue": "1",
                    "price": "1", "quantity": "1", "floor_price": "1", "cap": "1"}
            response = outsider.open(url, method=method, data=data)
            assert response.status_code == 404, f"{method} {url} as a member of company A"
            checked += 1
            if method == "GET" and "{" not in url and "delivery" not in url and "topup" not in url:
                own = insider.get(url)  # the ids are real: B's member opens them
                own.close()  # as a server does: a streamed download leaves its context
                assert own.status_code == 200 or own.status_code == 302 and \
                    "/login" not in own.headers["Location"], f"GET {url} as B's member"
        # Receipts are addressed by number.
        receipt = world["buyer_receipt" if role is Role.BUYER else "seller_receipt"]
        for path in (f"{area}receipts/{receipt}", f"{area}receipts/{receipt}.pdf"):
            assert outsider.get(path).status_code == 404, path
            assert insider.get(path).status_code == 200, path
        # A statement is the caller's company's: B's sales are not on A's.
        month = date.today().strftime("%Y-%m")
        def movements(client):
            text = client.get(f"{area}statements/{month}.csv").get_data(as_text=True)
            return [row for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
                    if row["kind"] not in ("opening", "closing")]
        assert movements(outsider) == [] and movements(insider) != []
    assert checked >= 20

    outsiders = {role: api_key_for(world["a"][role]) for role in Role if role in world["a"]}
    insiders = [api_key_for(member) for member in world["b"].values()]
    client = app.test_client()
    for rule in _routes_with_ids(app, "/api/v1/"):
        if rule.rule == "/api/v1/certificates/<public_id>":
            continue  # public by design (SPEC §11): it holds nothing of the person
        url = _url(rule, {**ids, "answer": "accept"})
        for method in sorted(rule.methods & {"GET", "POST", "PATCH"}):
            for role, headers in outsiders.items():
                body = ({"cap": 2} if "/batches/" in url else {"status": "contacted"}
                        if "/outcome" in url else {"quantity": 5} if "/orders/" in url else {})
                response = client.open(url, method=method, json=body, headers=headers)
                where = f"{method} {url} as A's {role.value}"
                # 404, or 403 from a route of the other role (refused by role alone).
                assert response.status_code == 404 or response.status_code == 403 and \
                    response.json["error"]["code"].startswith("not_a_"), where
                checked += 1
            if method == "GET" and "topup" not in url:
                assert any(client.get(url, headers=headers).status_code == 200
                           for headers in insiders), f"GET {url} as B's member"
    assert checked >= 40


def test_an_admin_on_a_member_page_sees_and_changes_the_company_account(app):
    owner, member = _buyer_company(10_000)
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    log_in(client, admin)
    page = client.get(f"/admin/users/{member.id}").get_data(as_text=True)
    assert 'id="company-member"' in page and "Buyers Ltd" in page and "$100.00" in page
    response = client.post(f"/admin/users/{member.id}/credit", data={
        "amount": "5.00", "reason": "wire received",
        "csrf_token": csrf_token(client, f"/admin/users/{member.id}")})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/users/{owner.id}")
    db.session.expire_all()
    assert ledger.balance_for(owner).available == 10_500
    assert ledger.balance_for(member).available == 0
