"""Two-factor login (SPEC §2): enrolment from the page (the seed read off it, codes
computed with pyotp), login with a code or a recovery code (each once), replay
refused, admins sent to enrolment and held there, the seed encrypted at rest."""
import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from app.errors import Forbidden, ValidationFailed
from app.extensions import db
from app.models import AuditEvent, RecoveryCode, Role, User
from app.models.types import utcnow
from app.people import two_factor
from app.services import accounts
from tests.conftest import (
    TEST_PASSWORD, TOTP_SEEDS, csrf_token, enrol_two_factor, log_in, make_user, totp_code,
)


def _password_step(client, user, **extra):
    response = client.post("/auth/login", data={
        "email": user.email, "password": TEST_PASSWORD,
        "csrf_token": csrf_token(client), **extra})
    assert response.status_code == 302
    return response


def _code_step(client, code):
    return client.post("/auth/two-factor", data={
        "code": code, "csrf_token": csrf_token(client, "/auth/two-factor")})


def _enrol_on_the_page(client) -> tuple[str, list[str]]:
    """Start, read the seed and QR code off the page, confirm with a computed code."""
    token = csrf_token(client, "/auth/two-factor/setup")
    assert client.post("/auth/two-factor/start", data={"csrf_token": token}).status_code == 302
    page = client.get("/auth/two-factor/setup").get_data(as_text=True)
    seed = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    assert 'src="data:image/svg+xml' in page  # the QR code, drawn locally
    response = client.post("/auth/two-factor/setup", data={
        "code": pyotp.TOTP(seed).now(), "csrf_token": csrf_token(client, "/auth/two-factor/setup")})
    assert response.status_code == 200
    codes = re.findall(r"<code>([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})</code>", response.get_data(as_text=True))
    assert len(codes) == 10
    return seed, codes


def _reload(user) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def test_a_buyer_enrols_and_then_logs_in_with_a_code(app, client):
    buyer = make_user(Role.BUYER)
    log_in(client, buyer)
    seed, codes = _enrol_on_the_page(client)
    buyer = _reload(buyer)
    assert buyer.two_factor_enabled
    assert seed.encode() not in bytes(buyer.totp_secret)  # encrypted at rest
    hashes = set(db.session.scalars(sa.select(RecoveryCode.code_hash)))
    assert len(hashes) == 10 and not any(c.replace("-", "") in h for c in codes for h in hashes)
    # Shown once: the page does not show them again.
    assert codes[0] not in client.get("/auth/two-factor/setup").get_data(as_text=True)

    other = app.test_client()
    response = _password_step(other, buyer)
    assert response.headers["Location"].endswith("/auth/two-factor")
    assert other.get("/buyer/").status_code == 302  # not signed in after the password alone
    assert _code_step(other, "000000").status_code == 200  # wrong: asked again
    # Whoever typed it knew the password: the failure stays in the audit log.
    failed = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "user.two_factor_failed")).all()
    assert [(e.actor_id, e.subject_id, e.details["kind"]) for e in failed] == [
        (buyer.id, buyer.id, "totp")]
    TOTP_SEEDS[buyer.email] = seed
    assert _code_step(other, totp_code(buyer)).status_code == 302
    assert other.get("/buyer/").status_code == 200


def test_the_same_code_is_refused_a_second_time(app):
    buyer = make_user(Role.BUYER, two_factor=True)
    first = app.test_client()
    _password_step(first, buyer)
    code = totp_code(buyer)
    assert _code_step(first, code).status_code == 302
    second = app.test_client()
    _password_step(second, buyer)
    page = _code_step(second, code)  # replayed within its window
    assert page.status_code == 200 and "used already" in page.get_data(as_text=True)
    assert second.get("/buyer/").status_code == 302


def test_a_code_from_the_step_before_a_used_one_is_refused(app):
    buyer = make_user(Role.BUYER, two_factor=True)
    seed = TOTP_SEEDS[buyer.email]
    totp_code(buyer)  # forgets the step its enrolment used
    buyer = _reload(buyer)
    now = utcnow()
    totp = pyotp.TOTP(seed)
    assert two_factor._accept_totp(buyer, totp.at(now), now)
    assert not two_factor._accept_totp(buyer, totp.at(now - timedelta(seconds=30)), now)
    assert not two_factor._accept_totp(buyer, totp.at(now - timedelta(seconds=90)), now)
    assert two_factor._accept_totp(buyer, totp.at(now + timedelta(seconds=30)), now)  # drift


def test_a_recovery_code_logs_in_once(app):
    buyer = make_user(Role.BUYER)
    codes = enrol_two_factor(buyer)
    db.session.commit()
    client = app.test_client()
    _password_step(client, buyer)
    response = _code_step(client, codes[3].lower().replace("-", " "))  # typed loosely
    assert response.status_code == 302
    assert "9 left" in client.get("/buyer/").get_data(as_text=True)
    again = app.test_client()
    _password_step(again, buyer)
    assert _code_step(again, codes[3]).status_code == 200
    assert "user.recovery_code_used" in set(db.session.scalars(sa.select(AuditEvent.action)))


def test_the_second_step_expires_and_follows_a_password_reset(app, client):
    buyer = make_user(Role.BUYER, two_factor=True)
    _password_step(client, buyer)
    token = csrf_token(client, "/auth/two-factor")
    accounts.set_password(_reload(buyer), "another password 1")  # nonce rotated
    db.session.commit()
    response = client.post("/auth/two-factor", data={"code": totp_code(buyer),
                                                     "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/auth/login")
    assert client.get("/buyer/").status_code == 302
    with client.session_transaction() as session:
        assert "two_factor_pending" not in session
    assert client.get("/auth/two-factor").headers["Location"].endswith("/auth/login")


def test_codes_are_rate_limited_per_login(app, client):
    buyer = make_user(Role.BUYER, two_factor=True)
    _password_step(client, buyer)
    for _ in range(5):
        assert _code_step(client, "123456").status_code == 200
    assert _code_step(client, totp_code(buyer)).status_code == 429


def test_an_admin_without_two_factor_is_sent_to_enrolment_and_held_there(app, client,
                                                                        api_key_for):
    admin = make_user(Role.ADMIN, two_factor=False)
    headers = api_key_for(admin)
    response = client.post("/auth/login", data={
        "email": admin.email, "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    for path in ("/", "/admin/", "/admin/outbox", "/notifications/", "/auth/api-keys"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].endswith("/auth/two-factor/setup"), path
    refused = client.get("/api/v1/admin/batches", headers=headers)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "two_factor_required"
    page = client.get("/auth/two-factor/setup").get_data(as_text=True)
    assert "nothing else is open to you" in page

    seed, _ = _enrol_on_the_page(client)
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/admin/batches", headers=headers).status_code == 200
    # Required: an admin cannot switch it off.
    with pytest.raises(Forbidden):
        two_factor.disable(_reload(admin), TEST_PASSWORD, pyotp.TOTP(seed).now())
    db.session.rollback()
    # From now on the admin's login asks for the code.
    other = app.test_client()
    assert _password_step(other, admin).headers["Location"].endswith("/auth/two-factor")


def test_a_seller_switches_it_off_with_password_and_code(app, client):
    seller = make_user(Role.SELLER, two_factor=True)
    log_in(client, seller)
    token = csrf_token(client, "/auth/two-factor/setup")
    client.post("/auth/two-factor/disable", data={
        "off-password": "wrong password!", "off-code": totp_code(seller), "csrf_token": token})
    assert _reload(seller).two_factor_enabled
    client.post("/auth/two-factor/disable", data={
        "off-password": TEST_PASSWORD, "off-code": "000000", "csrf_token": token})
    assert _reload(seller).two_factor_enabled
    page = client.post("/auth/two-factor/disable", data={
        "off-password": TEST_PASSWORD, "off-code": totp_code(seller), "csrf_token": token},
        follow_redirects=True).get_data(as_text=True)
    assert "Two-factor login is off" in page
    seller = _reload(seller)
    assert not seller.two_factor_enabled and seller.totp_secret is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    other = app.test_client()
    assert _password_step(other, seller).headers["Location"].endswith("/")


def test_new_recovery_codes_replace_the_old_ones(app, client):
    buyer = make_user(Role.BUYER)
    old = enrol_two_factor(buyer)
    db.session.commit()
    log_in(client, buyer)
    response = client.post("/auth/two-factor/recovery-codes", data={
        "codes-password": TEST_PASSWORD, "codes-code": totp_code(buyer),
        "csrf_token": csrf_token(client, "/auth/two-factor/setup")})
    new = re.findall(r"<code>([A-Z2-7-]{19})</code>", response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert two_factor.verify(_reload(buyer), old[0]) is None
    assert two_factor.verify(_reload(buyer), new[0]) == "recovery"


def test_a_sealed_seed_does_not_open_for_another_user(app):
    first, second = make_user(Role.BUYER, two_factor=True), make_user(Role.BUYER)
    second = _reload(second)
    second.totp_secret = _reload(first).totp_secret
    second.totp_enabled_at = utcnow()
    with pytest.raises(Exception, match="integrity"):
        two_factor.verify(second, "123456")
    db.session.rollback()


def test_enrolment_refuses_a_wrong_code(app):
    buyer = make_user(Role.BUYER)
    two_factor.start_enrolment(buyer)
    with pytest.raises(ValidationFailed):
        two_factor.confirm_enrolment(buyer, "000000")
    assert not buyer.two_factor_enabled


def test_the_demo_admin_signs_in_with_the_published_seed(app):
    from app.services import demo

    admin = accounts.create_user("admin@demo.example.com", TEST_PASSWORD, Role.ADMIN)
    two_factor.enable_with_seed(admin, demo.DEMO_ADMIN_TOTP_SEED)
    db.session.commit()
    client = app.test_client()
    _password_step(client, admin)
    code = app.test_cli_runner().invoke(args=["demo-code"]).output.strip()
    assert re.fullmatch(r"\d{6}", code)
    assert _code_step(client, code).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_code_must_follow_the_password_within_five_minutes(app, client):
    buyer = make_user(Role.BUYER, two_factor=True)
    _password_step(client, buyer)
    token = csrf_token(client, "/auth/two-factor")
    with client.session_transaction() as session:
        session["two_factor_pending"] = {**session["two_factor_pending"],
                                         "at": session["two_factor_pending"]["at"] - 301}
    response = client.post("/auth/two-factor", data={"code": totp_code(buyer),
                                                     "csrf_token": token})
    assert response.headers["Location"].endswith("/auth/login")
    assert client.get("/buyer/").status_code == 302
