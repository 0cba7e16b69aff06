"""Emailed one-time links (SPEC §2) end to end: the verification link sent at sign-up
and the password-reset link, read from a real SMTP server on loopback (aiosmtpd) and
followed; each works once, expires, and gives way to a newer one."""
import io
import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from app.errors import Forbidden
from app.extensions import db
from app.models import AccountLink, AuditEvent, LinkPurpose, Role, User
from app.models.types import utcnow
from app.people import account_links
from app.services import accounts, payments
from tests.conftest import TEST_PASSWORD, csrf_token, log_in, make_user
from tests.ingest_helpers import csv_bytes, person
from tests.smtp_server import bodies

NEW_PASSWORD = "a brand new passphrase"


def _sign_up(client, email="new@example.com", role="buyer"):
    response = client.post("/auth/signup", data={
        "role": role, "display_name": "Acme", "email": email, "password": TEST_PASSWORD,
        "confirm": TEST_PASSWORD, "csrf_token": csrf_token(client, "/auth/signup")})
    assert response.status_code == 302
    return db.session.scalar(sa.select(User).where(User.email == email))


def _link_in(message, kind: str) -> str:
    """The path of the one-time link in an email (text and HTML carry the same one)."""
    text, html = bodies(message)
    [link] = re.findall(rf"http://\S+/auth/{kind}/\S+", text)
    assert link in html
    return urlsplit(link).path


def _user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == email))


def _expire_links(user: User) -> None:
    db.session.execute(sa.update(AccountLink).where(AccountLink.user_id == user.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


# Verified email ---------------------------------------------------------------------

def test_sign_up_emails_a_link_that_verifies_the_address_once(client, smtp_server):
    user = _sign_up(client)
    assert not user.email_verified
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "new@example.com"
    assert "Confirm your email" in message["Subject"]
    page = client.get("/buyer/").get_data(as_text=True)
    assert 'id="verify-banner"' in page and "Send the link again" in page

    path = _link_in(message, "verify-email")
    secret = path.rsplit("/", 1)[1]
    stored = db.session.scalar(sa.select(AccountLink.token_hash))
    assert secret not in stored  # only a hash of it is kept

    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "new@example.com is confirmed" in page
    assert 'id="verify-banner"' not in page
    assert _user("new@example.com").email_verified
    assert db.session.scalar(sa.select(AuditEvent.action).where(
        AuditEvent.action == "user.email_verified")) == "user.email_verified"

    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "new@example.com is already confirmed" in page  # single use, and says it is done
    assert "used already" not in page
    elsewhere = client.application.test_client().get(path, follow_redirects=True)
    assert 'is already confirmed: <a class="alert-link" href="/auth/login">log in</a>' in \
        elsewhere.get_data(as_text=True)  # signed out: the way in


def test_the_link_works_from_another_browser_without_signing_in(app, client, smtp_server):
    _sign_up(client)
    path = _link_in(smtp_server.wait_for(1)[0], "verify-email")
    other = app.test_client()
    assert "is confirmed" in other.get(path, follow_redirects=True).get_data(as_text=True)
    assert _user("new@example.com").email_verified


def test_an_unverified_user_cannot_order_upload_or_withdraw(client, api_key_for, smtp_server):
    buyer = _sign_up(client)
    headers = api_key_for(buyer)
    response = client.post("/api/v1/orders", headers=headers,
                           json={"filters": {}, "price": 500, "quantity": 1})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "email_not_verified"
    with pytest.raises(Forbidden) as refused:
        payments.withdraw(_user("new@example.com"), 100)
    assert refused.value.code == "email_not_verified"
    db.session.rollback()

    seller_client = client.application.test_client()
    seller = _sign_up(seller_client, email="seller@example.com", role="seller")
    response = seller_client.post("/api/v1/batches", headers=api_key_for(seller), data={
        "default_country": "US", "floor_price": "100", "cap": "2",
        "file": (io.BytesIO(csv_bytes([person(1)])), "leads.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "email_not_verified"
    page = seller_client.post("/seller/batches/new", data={
        "default_country": "US", "floor_price": "1.00", "cap": "2",
        "csrf_token": csrf_token(seller_client, "/seller/batches/new"),
        "file": (io.BytesIO(csv_bytes([person(1)])), "leads.csv")},
        content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    assert "Confirm your email address first" in page


def test_resending_voids_the_older_link_and_is_rate_limited(app, client, smtp_server):
    _sign_up(client)
    first = _link_in(smtp_server.wait_for(1)[0], "verify-email")
    for count in (2, 3, 4):
        response = client.post("/auth/verify-email/resend",
                               data={"csrf_token": csrf_token(client, "/buyer/")})
        assert response.status_code == 302
        smtp_server.wait_for(count)
    refused = client.post("/auth/verify-email/resend",
                          data={"csrf_token": csrf_token(client, "/buyer/")})
    assert refused.status_code == 429  # three resends an hour (VERIFICATION_RESEND_RATE_LIMIT)
    assert len(smtp_server.messages) == 4
    newest = _link_in(smtp_server.messages[-1], "verify-email")
    page = client.get(first, follow_redirects=True).get_data(as_text=True)
    assert "a newer one was sent" in page
    assert not _user("new@example.com").email_verified
    client.get(newest)
    assert _user("new@example.com").email_verified


def test_an_expired_verification_link_fails_clearly(client, smtp_server):
    user = _sign_up(client)
    path = _link_in(smtp_server.wait_for(1)[0], "verify-email")
    _expire_links(user)
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "This link has expired" in page
    assert not _user("new@example.com").email_verified


def test_cli_demo_and_admin_made_users_are_verified(app):
    assert accounts.create_user("cli@example.com", TEST_PASSWORD, Role.SELLER).email_verified
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--email", "made@example.com",
                                 "--password", TEST_PASSWORD, "--role", "buyer"])
    assert result.exit_code == 0, result.output
    assert _user("made@example.com").email_verified


# Password reset ---------------------------------------------------------------------

def _ask_reset(client, email):
    return client.post("/auth/reset-password", data={
        "email": email, "csrf_token": csrf_token(client, "/auth/reset-password")},
        follow_redirects=True)


def _set_password(client, path, password=NEW_PASSWORD, confirm=None):
    form_page = client.get(path, follow_redirects=True)
    assert form_page.request.path == "/auth/reset-password/new"
    return client.post("/auth/reset-password/new", data={
        "password": password, "confirm": confirm or password,
        "csrf_token": csrf_token(client, "/auth/reset-password/new")}, follow_redirects=True)


def test_reset_answers_alike_for_known_and_unknown_addresses(client, smtp_server):
    make_user(email="known@example.com")
    known = _ask_reset(client, "known@example.com").get_data(as_text=True)
    unknown = _ask_reset(client, "nobody@example.com").get_data(as_text=True)
    # CSRF tokens (form fields and htmx's header) carry the second they were made.
    strip = re.compile(r'name="csrf_token"[^>]*>|"X-CSRFToken": "[^"]*"')
    assert strip.sub("", known) == strip.sub("", unknown)
    assert "If an account uses this address" in known
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "known@example.com"
    assert smtp_server.to("nobody@example.com") == []


def test_reset_sets_the_password_signs_out_every_session_and_keeps_api_keys(
        app, client, smtp_server, api_key_for):
    user = make_user(email="known@example.com")
    headers = api_key_for(user)
    elsewhere = app.test_client()
    log_in(elsewhere, user, remember=True)
    assert elsewhere.get("/buyer/").status_code == 200

    _ask_reset(client, "known@example.com")
    path = _link_in(smtp_server.wait_for(1)[0], "reset-password")
    page = _set_password(client, path).get_data(as_text=True)
    assert "every session of your account is logged out" in page

    assert elsewhere.get("/buyer/").status_code == 302  # the session and its remember-me
    assert client.get("/buyer/").status_code == 302  # not signed in by the link
    assert client.get("/api/v1/balance", headers=headers).status_code == 200  # keys stay
    with pytest.raises(AssertionError):
        log_in(app.test_client(), user)  # the old password no longer works
    log_in(app.test_client(), user, password=NEW_PASSWORD)
    actions = set(db.session.scalars(sa.select(AuditEvent.action)))
    assert {"user.password_reset_requested", "user.password_reset"} <= actions

    # Single use: the same link again is refused, and changes nothing.
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "used already" in page
    assert "Choose a new password" not in page


def test_an_expired_or_older_reset_link_fails(client, smtp_server):
    user = make_user(email="known@example.com")
    _ask_reset(client, "known@example.com")
    first = _link_in(smtp_server.wait_for(1)[0], "reset-password")
    _ask_reset(client, "known@example.com")
    second = _link_in(smtp_server.wait_for(2)[1], "reset-password")
    page = client.get(first, follow_redirects=True).get_data(as_text=True)
    assert "a newer one was sent" in page
    _expire_links(user)
    page = client.get(second, follow_redirects=True).get_data(as_text=True)
    assert "This link has expired" in page
    log_in(client, user)  # the password is unchanged


def test_a_weak_password_does_not_spend_the_link(client, smtp_server):
    make_user(email="known@example.com")
    _ask_reset(client, "known@example.com")
    path = _link_in(smtp_server.wait_for(1)[0], "reset-password")
    page = _set_password(client, path, password="short").get_data(as_text=True)
    assert "Use 10 to 200 characters." in page
    page = _set_password(client, path, password="not the same one", confirm="other").get_data(
        as_text=True)
    assert "Passwords differ." in page
    assert "every session" in _set_password(client, path).get_data(as_text=True)


def test_reset_requests_are_rate_limited_per_address(client, smtp_server):
    make_user(email="known@example.com")
    for _ in range(3):
        assert _ask_reset(client, "known@example.com").status_code == 200
    assert _ask_reset(client, "known@example.com").status_code == 429
    assert _ask_reset(client, "nobody@example.com").status_code == 200  # its own count
    assert len(smtp_server.wait_for(3)) == 3


def test_links_are_redacted_from_request_logs(app, client, smtp_server, caplog):
    from app.security import RedactOneTimeLinks

    make_user(email="known@example.com")
    _ask_reset(client, "known@example.com")
    path = _link_in(smtp_server.wait_for(1)[0], "reset-password")
    secret = path.rsplit("/", 1)[1]
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - "%s" %s',
                               ("127.0.0.1", f"GET {path} HTTP/1.1", "302"), None)
    assert RedactOneTimeLinks().filter(record)
    assert secret not in record.getMessage()
    assert "/auth/reset-password/[redacted]" in record.getMessage()
    access = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(r)s",
                               None, None)
    access.args = {"r": f"GET {path} HTTP/1.1", "U": path}
    RedactOneTimeLinks().filter(access)
    assert secret not in access.getMessage()


def test_link_operations_refuse_a_wrong_purpose(app):
    user = make_user(email="known@example.com")
    secret = account_links.issue(user, LinkPurpose.VERIFY_EMAIL)
    db.session.commit()
    with pytest.raises(account_links.LinkInvalid):
        account_links.reset_password(secret, NEW_PASSWORD)


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/batches", "/api/v1/leads",
                                  "/api/v1/withdrawals"])
def test_the_api_document_names_the_unverified_refusal(client, path):
    """Integrators read the 403 an unverified account gets from the OpenAPI document."""
    document = client.get("/api/v1/openapi.json").get_json()
    refusal = document["paths"][path]["post"]["responses"]["403"]
    assert "email_not_verified" in refusal["description"]
