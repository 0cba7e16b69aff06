import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEvent, Role, TrustLevel, User
from app.services import audit, ledger
from tests.conftest import csrf_token, make_user
from tests.ingest_helpers import csv_bytes, ingest, person


def test_overview_counts_users_and_shows_a_balanced_ledger(admin_client):
    make_user(Role.SELLER)
    body = admin_client.get("/admin/").get_data(as_text=True)
    assert "Marketplace overview" in body and "Balanced" in body


def test_users_list_filters(admin_client):
    make_user(Role.SELLER, email="blog@example.com")
    make_user(Role.BUYER, email="shop@example.com")
    body = admin_client.get("/admin/users?role=seller").get_data(as_text=True)
    assert "blog@example.com" in body and "shop@example.com" not in body
    body = admin_client.get("/admin/users?q=shop").get_data(as_text=True)
    assert "shop@example.com" in body and "blog@example.com" not in body


def test_admin_changes_trust_with_a_reason(admin_client, admin):
    seller = make_user(Role.SELLER)
    token = csrf_token(admin_client, f"/admin/users/{seller.id}")
    response = admin_client.post(f"/admin/users/{seller.id}/trust",
                                 data={"level": "suspended", "reason": "fake leads",
                                       "csrf_token": token}, follow_redirects=True)
    assert "is now suspended" in response.get_data(as_text=True)
    assert db.session.get(User, seller.id).trust_level is TrustLevel.SUSPENDED
    event = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "seller.trust_changed"))
    assert event.actor_id == admin.id and event.details["reason"] == "fake leads"


def test_admin_manual_credit_parses_money_exactly(admin_client):
    buyer = make_user(Role.BUYER)
    token = csrf_token(admin_client, f"/admin/users/{buyer.id}")
    admin_client.post(f"/admin/users/{buyer.id}/credit",
                      data={"amount": "1,234.5", "reason": "wire 7", "csrf_token": token})
    assert ledger.balance_for(buyer).available == 123_450
    body = admin_client.post(f"/admin/users/{buyer.id}/credit", follow_redirects=True,
                             data={"amount": "12.345", "reason": "x", "csrf_token": token}
                             ).get_data(as_text=True)
    assert "is not an amount" in body
    assert ledger.balance_for(buyer).available == 123_450


def test_audit_log_filters_by_action(admin_client):
    buyer = make_user(Role.BUYER)
    ledger.manual_credit(buyer, 100, reason="wire", actor=None)
    body = admin_client.get("/admin/audit?action=ledger.").get_data(as_text=True)
    assert "ledger.manual_credit" in body
    body = admin_client.get("/admin/audit?action=seller.").get_data(as_text=True)
    assert "ledger.manual_credit" not in body.split("<tbody>")[1]


def test_huge_ids_in_urls_are_404_not_500(admin_client):
    assert admin_client.get("/admin/users/99999999999999999999999").status_code == 404
    page = admin_client.get("/admin/users/999999")
    assert page.status_code == 404 and "Page not found" in page.get_data(as_text=True)


def test_user_search_treats_wildcards_literally(admin_client):
    make_user(Role.BUYER, email="plain@example.com")
    body = admin_client.get("/admin/users?q=%25").get_data(as_text=True)
    assert "plain@example.com" not in body


def test_same_trust_level_again_is_refused(admin_client):
    seller = make_user(Role.SELLER)
    token = csrf_token(admin_client, f"/admin/users/{seller.id}")
    body = admin_client.post(f"/admin/users/{seller.id}/trust", follow_redirects=True,
                             data={"level": "new", "reason": "x", "csrf_token": token}
                             ).get_data(as_text=True)
    assert "already new" in body


def test_audit_details_read_as_words_not_python(admin_client):

    audit.record("returns.contacts_viewed", actor=None, subject_type="returns",
                 details={"leads": list(range(100, 130)), "notified": True, "note": None,
                          "previous": {"588": None, "589": 2}, "unbalanced": []})
    db.session.commit()
    page = admin_client.get("/admin/audit?action=returns.contacts_viewed").get_data(as_text=True)
    row = page.split("<code>returns.contacts_viewed</code></div></td>", 1)[1].split("</tr>", 1)[0]
    assert "Returns #None" not in row and ">Returns<" in row
    assert "<dd class=\"text-break\">yes</dd>" in row and "<dd class=\"text-break\">—</dd>" in row
    assert "30: 100, 101, 102" in row and "129" in row  # long lists fold, all still there
    assert "588: —; 589: 2" in row
    assert "<dt>unbalanced</dt>\n  <dd class=\"text-break\">none</dd>" in row  # not blank
    assert "True" not in row and "None" not in row


def test_audit_log_names_the_user_it_is_about(admin_client):
    seller = make_user(Role.SELLER, email="anna@example.com", display_name="Anna Petrova")
    audit.record("seller.trust_changed", actor=None, subject_type="user", subject_id=seller.id,
                 details={"reason": "x"})
    db.session.commit()
    page = admin_client.get("/admin/audit?action=seller.").get_data(as_text=True)
    row = page.split("<code>seller.trust_changed</code></div></td>", 1)[1].split("</tr>", 1)[0]
    assert f'/admin/users/{seller.id}">Anna Petrova</a>' in row
    assert f"user #{seller.id}" not in row


def test_a_sellers_page_lists_their_batches_with_the_way_to_each_review(admin_client):
    """A batch whose spot-check was decided leaves the queue: the seller's page leads
    back to it."""
    seller = make_user(Role.SELLER)
    first = ingest(seller, csv_bytes([person(1), person(2)]))
    second = ingest(seller, csv_bytes([person(3)]))
    db.session.commit()
    page = admin_client.get(f"/admin/users/{seller.id}").get_data(as_text=True)
    table = page.split('id="seller-batches"', 1)[1].split("</table>", 1)[0]
    assert table.index(f'href="/admin/quality/batches/{second.id}"') < table.index(
        f'href="/admin/quality/batches/{first.id}"')  # newest first
    assert "test.csv" in table
    buyer = make_user(Role.BUYER)
    assert 'id="seller-batches"' not in admin_client.get(f"/admin/users/{buyer.id}").get_data(
        as_text=True)
