import pytest
import sqlalchemy as sa

from app.errors import Conflict, ValidationFailed
from app.extensions import db
from app.models import ApiKey, Role, TrustLevel
from app.services import accounts
from tests.conftest import TEST_PASSWORD, make_user


def test_public_sign_up_is_for_sellers_and_buyers_only(app):
    assert accounts.sign_up("s@example.com", TEST_PASSWORD, "seller", "S").role is Role.SELLER
    assert accounts.sign_up("b@example.com", TEST_PASSWORD, "buyer", "B").role is Role.BUYER
    with pytest.raises(ValidationFailed):
        accounts.sign_up("a@example.com", TEST_PASSWORD, "admin", "A")
    with pytest.raises(ValidationFailed) as exc:  # others read the name: it is required
        accounts.sign_up("n@example.com", TEST_PASSWORD, "buyer", " ")
    assert exc.value.code == "name_required"


def test_emails_are_unique_whatever_their_case(app):
    make_user(Role.BUYER, email="Someone@Example.com")
    with pytest.raises(Conflict):
        accounts.create_user("someone@example.COM", TEST_PASSWORD, Role.SELLER)


def test_bad_email_and_weak_password_are_refused(app):
    with pytest.raises(ValidationFailed) as exc:
        accounts.create_user("not-an-email", TEST_PASSWORD, Role.BUYER)
    assert exc.value.code == "invalid_email"
    with pytest.raises(ValidationFailed) as exc:
        accounts.create_user("ok@example.com", "short", Role.BUYER)
    assert exc.value.code == "weak_password"
    with pytest.raises(ValidationFailed) as exc:  # long enough, guessed at once
        accounts.create_user("ok@example.com", "password123", Role.BUYER)
    assert exc.value.code == "weak_password" and "very common password" in exc.value.message


def test_a_password_made_of_the_persons_own_address_is_refused(app):
    """zxcvbn is given the address's parts: with the whole address as one word,
    `marysmithsonacme7` rated 4 (strong)."""
    with pytest.raises(ValidationFailed) as exc:
        accounts.create_user("marysmithson@acme.example", "marysmithsonacme7", Role.BUYER,
                             display_name="Mary Smithson")
    assert exc.value.code == "weak_password"
    user = make_user(email="marysmithson@acme.example")
    with pytest.raises(ValidationFailed) as exc:
        accounts.change_password(user, TEST_PASSWORD, "marysmithsonacme7")
    assert exc.value.code == "weak_password"
    accounts.change_password(user, TEST_PASSWORD, "correct horse battery staple")


def test_passwords_are_stored_as_argon2id_hashes(app):
    user = make_user()
    assert user.password_hash.startswith("$argon2id$")
    assert TEST_PASSWORD not in user.password_hash
    assert accounts.authenticate(user.email, TEST_PASSWORD) == user
    assert accounts.authenticate(user.email.upper(), TEST_PASSWORD) == user
    assert accounts.authenticate(user.email, "wrong password!") is None
    assert accounts.authenticate("nobody@example.com", TEST_PASSWORD) is None


def test_deactivated_users_cannot_log_in(app):
    user = make_user(is_active_account=False)
    assert accounts.authenticate(user.email, TEST_PASSWORD) is None


def test_password_change_rotates_the_session_nonce(app):
    user = make_user()
    old_id = user.get_id()
    with pytest.raises(ValidationFailed):
        accounts.change_password(user, "wrong password!", "a brand new password")
    accounts.change_password(user, TEST_PASSWORD, "a brand new password")
    assert user.get_id() != old_id
    assert accounts.load_user_from_session_id(old_id) is None
    assert accounts.load_user_from_session_id(user.get_id()) == user
    assert accounts.authenticate(user.email, "a brand new password") == user


def test_api_keys_are_stored_hashed_and_can_be_revoked(app):
    user = make_user()
    key, secret = accounts.create_api_key(user, "site")
    db.session.commit()
    stored = db.session.scalars(sa.select(ApiKey.key_hash)).all()
    assert secret not in stored and len(stored) == 1
    assert secret.startswith(key.prefix)
    assert accounts.api_key_for(secret).user == user
    assert accounts.api_key_for(secret + "x") is None
    assert accounts.api_key_for("garbage") is None
    accounts.revoke_api_key(user, key.id)
    assert accounts.api_key_for(secret) is None


def test_an_api_key_records_its_last_use_to_the_minute(app):
    key, secret = accounts.create_api_key(make_user(), "site")
    db.session.commit()
    assert accounts.record_use(accounts.api_key_for(secret))
    first = key.last_used_at
    assert first is not None
    assert not accounts.record_use(accounts.api_key_for(secret))  # not a write per request
    assert key.last_used_at == first
    key.last_used_at = first - accounts.LAST_USED_RESOLUTION
    db.session.commit()
    assert accounts.record_use(accounts.api_key_for(secret))
    db.session.expire_all()
    assert key.last_used_at > first


def test_trust_changes_need_a_reason_and_are_audited(app):
    seller = make_user(Role.SELLER)
    buyer = make_user(Role.BUYER)
    with pytest.raises(ValidationFailed):
        accounts.set_trust_level(seller, "verified", reason=" ", actor=None)
    with pytest.raises(ValidationFailed):
        accounts.set_trust_level(buyer, "verified", reason="x", actor=None)
    accounts.set_trust_level(seller, "verified", reason="good record", actor=None)
    assert seller.trust_level is TrustLevel.VERIFIED
    from app.models import AuditEvent

    event = db.session.scalar(sa.select(AuditEvent))
    assert event.action == "seller.trust_changed"
    assert event.details == {"from": "new", "to": "verified", "reason": "good record"}
