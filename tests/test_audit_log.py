"""The audit log names who did what (SPEC §2): a company member's orders, delivery
settings, money (top-ups, withdrawals, automatic top-ups), returns, outcomes and API keys, each one entry naming the member, the
account they acted for, the target and what changed (a URL only by its host, never a
secret nor a lead's contacts); through the API, the key used. Admins read them in
words; a company's owners read their company's, and nobody else's."""
import io
import json
import re

import pytest
from flask import current_app
import sqlalchemy as sa

from app.extensions import db
from app.labels import LABELS
from app.market import jobs
from app.models import ApiKey, AuditEvent, Order, Role, TopUp, TopUpStatus, TrustLevel
from app.services import ledger
from app.services.crypto import current_vault
from tests.conftest import csrf_token, wait_until
from tests.test_autotopup import _save_card
from tests.market_helpers import live_leads, person, place, sales_of
from tests.test_companies import client_of, company, member_of

HOOK = "https://mia:hunter2@hooks.mia-own.example:8443/leads?token=tok_leak_me"


@pytest.fixture
def team(app):
    """A buyer company with money, its owner and Mia, a member, signed in on the web."""
    owner = company(Role.BUYER, "Acme Solar")
    ledger.manual_credit(owner, 100_000, reason="test funds", actor=None)
    db.session.commit()
    mia = member_of(owner, "mia@acme.example")
    return owner, mia, client_of(app, mia)


def _entries(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


def _entry(action: str) -> AuditEvent:
    found = _entries(action)
    assert found, f"no {action} entry"
    assert action in LABELS["audit"], f"{action} has no words for the logs"
    return found[-1]


def _by_member(action: str, member, account) -> AuditEvent:
    """The latest `action` entry, which names the member acting for the account."""
    event = _entry(action)
    assert event.actor_id == member.id and event.details["account"] == account.id, \
        (action, event.actor_id, event.details)
    return event


def _never_in_log(*texts: str) -> None:
    db.session.expire_all()
    logged = json.dumps([e.details for e in db.session.scalars(sa.select(AuditEvent))])
    for text in texts:
        assert text not in logged, text


def _webhook_secret(order_id: int) -> str:
    db.session.expire_all()
    return current_vault().decrypt(db.session.get(Order, order_id).webhook_secret_enc)


def test_a_members_order_actions_name_them_the_account_and_the_order(team):
    owner, mia, client = team
    response = client.post("/buyer/orders/new", data={
        "price": "5.00", "quantity": "3", "budget": "12.00", "lookback_days": "30",
        "timezone": "UTC", "webhook_url": HOOK,
        "csrf_token": csrf_token(client, "/buyer/orders/new")})
    assert response.status_code == 302, response.get_data(as_text=True)
    order_url = response.headers["Location"]
    order_id = int(order_url.rstrip("/").split("/")[-1])
    placed = _by_member("order.placed", mia, owner)
    assert placed.subject_type == "order" and placed.subject_id == order_id
    assert placed.details | {"account": None} == {
        "price": 500, "quantity": 3, "budget": 1200, "held": 1200,
        "webhook_host": "hooks.mia-own.example:8443", "account": None}

    token = csrf_token(client, order_url)
    for path, action in (("pause", "order.paused"), ("resume", "order.resumed")):
        assert client.post(f"/buyer/orders/{order_id}/{path}",
                           data={"csrf_token": token}).status_code == 302
        assert _by_member(action, mia, owner).subject_id == order_id
    assert client.post(f"/buyer/orders/{order_id}/change", data={
        "csrf_token": token, "price": "6.00", "quantity": "3"}).status_code == 302
    changed = _by_member("order.changed", mia, owner)
    assert changed.subject_id == order_id
    assert changed.details["changed"] == ["price"]
    assert (changed.details["price_before"], changed.details["price"]) == (500, 600)
    activity = client_of(current_app, owner).get("/auth/team/activity").get_data(as_text=True)
    assert "<dt>price before</dt>\n  <dd class=\"text-break\">$5.00</dd>" in activity
    assert client.post(f"/buyer/orders/{order_id}/cancel",
                       data={"csrf_token": token}).status_code == 302
    cancelled = _by_member("order.cancelled", mia, owner)
    assert cancelled.subject_id == order_id and cancelled.details["released"] == 1200
    # The owner's own action is under the owner's name, with no account beside it.
    owner_order = place(owner, 500, 1)
    assert _entry("order.placed").actor_id == owner.id
    assert "account" not in _entry("order.placed").details
    assert _entry("order.placed").subject_id == owner_order.id
    _never_in_log("hunter2", "tok_leak_me", "/leads", _webhook_secret(order_id))


def test_delivery_settings_changes_say_where_leads_now_go_and_no_secret(team):
    owner, mia, client = team
    order = place(owner, 500, 2)
    page = f"/buyer/orders/{order.id}/delivery"

    def post(path, **data):
        response = client.post(f"/buyer/orders/{order.id}/{path}",
                               data={"csrf_token": csrf_token(client, page), **data})
        assert response.status_code == 302, response.get_data(as_text=True)

    post("webhook", webhook_url=HOOK)
    first_secret = _webhook_secret(order.id)
    changed = _by_member("order.webhook_changed", mia, owner)
    assert changed.subject_id == order.id
    assert changed.details | {"account": None} == {
        "from_host": None, "to_host": "hooks.mia-own.example:8443", "new_secret": True,
        "account": None}
    post("webhook", webhook_url="https://crm.acme.example/in")
    assert _entry("order.webhook_changed").details["from_host"] == "hooks.mia-own.example:8443"
    assert _entry("order.webhook_changed").details["to_host"] == "crm.acme.example"

    post("delivery/format", method="http", body_format="form",
         mapping="Phone = digits(phone)", headers="Authorization: Bearer hdr_leak_me",
         reply_kind="status", reply_path="", reply_accept="", reply_reason="")
    formatted = _by_member("order.delivery_format_changed", mia, owner)
    assert formatted.subject_id == order.id
    assert (formatted.details["format"], formatted.details["header_names"]) == \
        ("form", ["Authorization"])
    activity = client_of(current_app, owner).get("/auth/team/activity").get_data(as_text=True)
    assert "<dd class=\"text-break\">Form-encoded</dd>" in activity
    assert "<dd class=\"text-break\">Accepted when the reply is HTTP 2xx</dd>" in activity
    post("delivery/format", method="webhook")
    assert _by_member("order.delivery_format_changed", mia, owner).details["format"] == \
        "webhook"

    post("delivery/email", enabled="y", mode="digest", digest="hourly",
         addresses="Mia.Private@Gmail.example, crm@acme.example")
    emailed = _by_member("order.email_delivery_changed", mia, owner)
    assert emailed.subject_id == order.id
    assert (emailed.details["addresses"], emailed.details["domains"],
            emailed.details["mode"], emailed.details["digest"]) == \
        (2, ["acme.example", "gmail.example"], "digest", "hourly")
    post("delivery/email", mode="lead", digest="daily", addresses="")
    assert _by_member("order.email_delivery_stopped", mia, owner).subject_id == order.id
    _never_in_log("hunter2", "tok_leak_me", "hdr_leak_me", "Mia.Private", first_secret,
                  _webhook_secret(order.id))


def test_money_moved_by_a_member_on_the_web_and_with_their_api_key(team, stripe_app,
                                                                     api_key_for):
    owner, mia, client = team
    headers = api_key_for(mia)
    key_secret = headers["Authorization"].split()[1]
    response = client.post("/api/v1/topups", headers=headers,
                           json={"amount": 5000, "payment_method": "pm_card_visa"})
    assert response.status_code == 201, response.json
    topup_id, client_secret = response.json["id"], response.json["client_secret"]
    started = _by_member("topup.started", mia, owner)
    assert (started.subject_type, started.subject_id) == ("topup", topup_id)
    assert started.details["amount"] == 5000 and started.details["card_given"] is True
    key = db.session.scalar(sa.select(ApiKey).where(ApiKey.user_id == mia.id))
    assert started.details["api_key"] == {"id": key.id, "name": "test"}
    assert wait_until(lambda: db.session.get(TopUp, topup_id).status is TopUpStatus.SUCCEEDED)

    response = client.post("/buyer/balance/withdraw", data={
        "amount": "5.00", "csrf_token": csrf_token(client, "/buyer/balance")})
    assert response.status_code == 302
    withdrawn = _by_member("balance.withdrawn", mia, owner)
    assert withdrawn.subject_type == "withdrawal" and withdrawn.details["amount"] == 500
    assert "api_key" not in withdrawn.details  # signed in on the web

    # Automatic top-ups: the card saved (here outside any request: the account's own
    # name), then Mia changes the terms on the balance page.
    _save_card(owner, "4242424242424242")
    saved = _entry("autotopup.card_saved")
    assert saved.actor_id == owner.id and saved.details["card"].endswith("4242")
    response = client.post("/buyer/balance/auto-topup", data={
        "threshold": "10.00", "amount": "25.00", "enabled": "y",
        "csrf_token": csrf_token(client, "/buyer/balance")})
    assert response.status_code == 302
    changed = _by_member("autotopup.changed", mia, owner)
    assert (changed.details["threshold"], changed.details["amount"],
            changed.details["enabled"]) == (1_000, 2_500, True)
    _never_in_log(key_secret, client_secret)


def _sold(owner, n: int):
    seller = company(Role.SELLER, "Lead Farm", trust_level=TrustLevel.VERIFIED)
    people = [person(i) for i in range(n)]
    live_leads(seller, people)
    order = place(owner, 300, n)
    jobs.fill_order(order.id)
    db.session.commit()
    return seller, order, [s.id for s in sales_of(order)], people


def test_returns_and_outcomes_one_entry_each_and_one_per_file(team, app, api_key_for):
    owner, mia, client = team
    seller, order, sales, people = _sold(owner, 6)
    order_url = f"/buyer/orders/{order.id}"

    response = client.post(f"/buyer/sales/{sales[0]}/return", data={
        "reason": "fake", "note": "called person0@mail.example.com, no such person",
        "csrf_token": csrf_token(client, f"/buyer/sales/{sales[0]}/return")})
    assert response.status_code == 302
    filed = _by_member("return.filed", mia, owner)
    assert (filed.subject_type, filed.subject_id) == ("sale", sales[0])
    assert filed.details["reason"] == "fake" and filed.details["order"] == order.id
    # Read in the words of the return form, about a sale named so.
    activity = client_of(app, owner).get("/auth/team/activity").get_data(as_text=True)
    assert "<dd class=\"text-break\">Fake person</dd>" in activity
    assert f"Sale #{sales[0]}" in activity
    # The seller's member contests it: named too, with the answer (not the note's text).
    sam = member_of(seller, "sam@leadfarm.example")
    seller_client = client_of(app, sam)
    response = seller_client.post(f"/seller/returns/{filed.details['return']}/contest", data={
        "note": "consent recorded, see certificate",
        "csrf_token": csrf_token(seller_client, "/seller/returns")})
    assert response.status_code == 302
    answered = _by_member("return.answered", sam, seller)
    assert (answered.subject_id, answered.details["answer"]) == (sales[0], "contested")

    token = csrf_token(client, order_url)
    client.post(f"{order_url}/outcome", data={"csrf_token": token, "sale_id": sales[1],
                                              "status": "contacted"})
    inline = _by_member("outcomes.recorded", mia, owner)
    assert (inline.subject_type, inline.subject_id) == ("sale", sales[1])
    assert inline.details["leads"] == 1 and inline.details["outcomes"] == {"contacted": 1}
    client.post(f"{order_url}/outcomes", data={"csrf_token": token, "sale_id": sales[2:4],
                                               "status": "bad"})
    bulk = _by_member("outcomes.recorded", mia, owner)
    assert bulk.details["leads"] == 2 and sorted(bulk.details["sales"]) == sorted(sales[2:4])

    before = len(_entries("outcomes.recorded"))
    rows = [("sale_id", "status", "revenue"), (sales[4], "converted", "12.50"),
            (sales[5], "contacted", ""), (sales[1], "", "")]
    upload = "\n".join(",".join(map(str, row)) for row in rows).encode()
    response = client.post("/buyer/outcomes/upload", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, "/buyer/outcomes/upload"),
        "file": (io.BytesIO(upload), "outcomes.csv")})
    assert response.status_code == 302
    assert len(_entries("outcomes.recorded")) == before + 1  # one entry for the file
    imported = _by_member("outcomes.recorded", mia, owner)
    assert imported.details["source"] == "csv" and imported.details["leads"] == 2
    assert imported.details["outcomes"] == {"converted": 1, "contacted": 1}
    assert imported.details["rows_skipped"] == 1
    activity = client_of(current_app, owner).get("/auth/team/activity").get_data(as_text=True)
    assert "<dt>source</dt>\n  <dd class=\"text-break\">An uploaded CSV file</dd>" in activity

    headers = api_key_for(mia)
    assert client.post(f"/api/v1/sales/{sales[5]}/outcome", headers=headers,
                       json={"status": "converted", "revenue": 900}).status_code in (200, 201)
    by_api = _by_member("outcomes.recorded", mia, owner)
    assert by_api.subject_id == sales[5] and by_api.details["api_key"]["name"] == "test"
    contacts = [p[field] for p in people for field in ("email", "phone", "first_name")]
    _never_in_log(*contacts, headers["Authorization"].split()[1], "no such person",
                  "see certificate")


def test_api_keys_created_and_revoked_by_a_member(team):
    owner, mia, client = team
    page = client.post("/auth/api-keys", data={
        "name": "crm sync", "csrf_token": csrf_token(client, "/auth/api-keys")}
    ).get_data(as_text=True)
    secret = re.search(r"lx_[A-Za-z0-9_-]{20,}", page).group(0)
    created = _entry("api_key.created")
    assert created.actor_id == mia.id and created.details["name"] == "crm sync"
    assert secret.startswith(created.details["prefix"])
    client.post(f"/auth/api-keys/{created.subject_id}/revoke",
                data={"csrf_token": csrf_token(client, "/auth/api-keys")})
    revoked = _entry("api_key.revoked")
    assert (revoked.actor_id, revoked.subject_id) == (mia.id, created.subject_id)
    client.post(f"/auth/api-keys/{created.subject_id}/revoke",
                data={"csrf_token": csrf_token(client, "/auth/api-keys")})
    assert len(_entries("api_key.revoked")) == 1  # revoking again changes nothing
    _never_in_log(secret)
    # Whose the key was shows on the owner's activity page.
    assert "API key created" in client_of(client.application, owner).get(
        "/auth/team/activity").get_data(as_text=True)


def test_admins_read_entries_in_words_and_owners_read_only_their_company(team, app,
                                                                          admin_client):
    owner, mia, client = team
    order = place(owner, 500, 2)
    client.post(f"/buyer/orders/{order.id}/webhook", data={
        "webhook_url": HOOK, "csrf_token": csrf_token(client, f"/buyer/orders/{order.id}/delivery")})
    assert _entry("order.webhook_changed").actor_id == mia.id

    page = admin_client.get("/admin/audit?action=order.").get_data(as_text=True)
    assert "Delivery URL changed" in page and "Order placed" in page
    assert "mia@acme.example" in page and "hooks.mia-own.example:8443" in page
    assert "<dt>account</dt>\n  <dd class=\"text-break\">Acme Solar</dd>" in page
    assert "hunter2" not in page and "tok_leak_me" not in page
    assert "Delivery URL changed (order.webhook_changed)</option>" in page

    activity = client_of(app, owner).get("/auth/team/activity")
    assert activity.status_code == 200
    text = activity.get_data(as_text=True)
    assert "Delivery URL changed" in text and "mia@acme.example" in text
    assert f"Order #{order.id}" in text and "hunter2" not in text
    assert "<dt>account</dt>" not in text  # every entry here is the owner's own account
    assert "Member joined" in text  # the team's own history too
    # A member does not read it; another company's owner reads only their own.
    assert client.get("/auth/team/activity").status_code == 403
    other = company(Role.BUYER, "Other Buyers")
    other_page = client_of(app, other).get("/auth/team/activity").get_data(as_text=True)
    assert "mia@acme.example" not in other_page and "Nothing yet." in other_page
    assert "see it</a>" in client_of(app, owner).get("/auth/team").get_data(as_text=True)


def test_every_action_the_code_records_has_words_for_the_logs():
    """Each action written in an audit.record call (both sides of a conditional) has
    its label; an action built at run time is met where a test records it (_entry)."""
    import ast
    from pathlib import Path

    written = set()
    for source in Path(__file__).resolve().parents[1].joinpath("app").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "record" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "audit" and node.args):
                action = node.args[0]
                sides = [action.body, action.orelse] if isinstance(action, ast.IfExp) else [action]
                written.update(side.value for side in sides if isinstance(side, ast.Constant))
    assert len(written) > 40  # the walk found the calls
    assert sorted(written - set(LABELS["audit"])) == []
