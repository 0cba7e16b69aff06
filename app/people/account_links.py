"""One-time links emailed to a user, operations (flush; callers commit): verify the
address given at sign-up, reset a forgotten password, and join a company
(app.people.companies) (SPEC §2).

A link carries 256 random bits; only their SHA-256 is stored, so reading the
database does not give anyone a working link. A link works once, until it expires,
and only while it is the user's newest of its kind: sending a new one, or using one,
voids the others. Using it is one conditional UPDATE (`used_at IS NULL`), so two
clicks racing each other cannot both succeed. The secret appears only in the email;
request logs show it redacted (app/security.py)."""
import hashlib
import secrets
from datetime import timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from app.core import mail
from app.errors import DomainError, NotFound
from app.extensions import db
from app.models import AccountLink, LinkPurpose, User
from app.models.types import utcnow
from app.people.notifications import path
from app.services import accounts, audit


class LinkInvalid(DomainError):
    """The link is unknown, used, replaced by a newer one, or expired."""

    code = "link_invalid"
    status = 400


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _lifetime(purpose: LinkPurpose) -> timedelta:
    if purpose is LinkPurpose.VERIFY_EMAIL:
        return timedelta(hours=current_app.config["EMAIL_VERIFICATION_HOURS"])
    if purpose is LinkPurpose.INVITATION:
        return timedelta(days=current_app.config["INVITATION_DAYS"])
    return timedelta(minutes=current_app.config["PASSWORD_RESET_MINUTES"])


def _void_others(user_id: int, purpose: LinkPurpose, now) -> None:
    db.session.execute(
        sa.update(AccountLink)
        .where(AccountLink.user_id == user_id, AccountLink.purpose == purpose,
               AccountLink.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))


def issue(user: User, purpose: LinkPurpose) -> str:
    """A new link's secret for the user; their older links of this kind stop working."""
    now = utcnow()
    _void_others(user.id, purpose, now)
    secret = secrets.token_urlsafe(32)
    db.session.add(AccountLink(user_id=user.id, purpose=purpose, token_hash=_hash(secret),
                               created_at=now, expires_at=now + _lifetime(purpose)))
    db.session.flush()
    return secret


def check(secret: str, purpose: LinkPurpose) -> AccountLink:
    """The link for this secret if it still works (reads only)."""
    link = db.session.scalar(sa.select(AccountLink).where(
        AccountLink.token_hash == _hash(secret or ""), AccountLink.purpose == purpose))
    if link is None:
        raise LinkInvalid("This link is not valid. Check that you copied all of it.")
    if link.used_at is not None:
        raise LinkInvalid("This link was used already, or a newer one was sent since: "
                          "use the newest email, or ask for a new link.")
    if link.expires_at <= utcnow():
        raise LinkInvalid("This link has expired. Ask for a new one.")
    return link


def use(secret: str, purpose: LinkPurpose) -> User:
    """Spend the link: its user, once. Voids the user's other links of this kind.
    The spending UPDATE comes first, so that it can open its transaction: on SQLite a
    transaction that read first (a GET's) could not write if someone wrote meanwhile."""
    now = utcnow()
    token_hash = _hash(secret or "")
    spent = db.session.execute(
        sa.update(AccountLink)
        .where(AccountLink.token_hash == token_hash, AccountLink.purpose == purpose,
               AccountLink.used_at.is_(None), AccountLink.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if not spent:
        check(secret, purpose)  # says why
        raise LinkInvalid("This link was used already.")
    link = db.session.scalar(sa.select(AccountLink).where(AccountLink.token_hash == token_hash))
    _void_others(link.user_id, purpose, now)
    return link.user


# Verifying the address --------------------------------------------------------------

def send_verification(user: User) -> None:
    """Email the user a link that confirms their address (after sign-up, or again)."""
    if user.email_verified:
        return
    secret = issue(user, LinkPurpose.VERIFY_EMAIL)
    hours = current_app.config["EMAIL_VERIFICATION_HOURS"]
    mail.queue(
        user.email, "Confirm your email address for LeadX", "account_link",
        user_id=user.id, kind="verify_email", title="Confirm your email address",
        paragraphs=["Welcome to LeadX. Confirm that this address is yours to start "
                    "placing orders, uploading leads and withdrawing money.",
                    f"The link works once, for {hours} hours."],
        link=mail.public_url(path("auth.verify_email", token=secret)),
        link_label="Confirm my address",
        footer="You receive this because this address was used to sign up at LeadX. "
               "If that was not you, ignore this email.")


def verify_email(secret: str) -> tuple[User, bool]:
    """Mark the address of the link's user as verified: the user, and whether it was
    confirmed now. A spent link of an address confirmed since (opened again, or an
    older email's) is no error to its reader: (user, False)."""
    try:
        user = use(secret, LinkPurpose.VERIFY_EMAIL)
    except LinkInvalid:
        link = db.session.scalar(sa.select(AccountLink).where(
            AccountLink.token_hash == _hash(secret or ""),
            AccountLink.purpose == LinkPurpose.VERIFY_EMAIL))
        if link is not None and link.user.email_verified:
            return link.user, False
        raise
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        audit.record("user.email_verified", actor=user, subject_type="user",
                     subject_id=user.id)
    db.session.flush()
    return user, True


# Resetting the password --------------------------------------------------------------

def request_password_reset(email: str) -> None:
    """Email a reset link if an active account has this address; say nothing either way,
    so the answer does not tell who has an account."""
    try:
        user: Optional[User] = accounts.find_user_by_email(accounts.normalise_email(email))
    except DomainError:
        user = None
    if user is None or not user.is_active:
        return
    secret = issue(user, LinkPurpose.RESET_PASSWORD)
    minutes = current_app.config["PASSWORD_RESET_MINUTES"]
    mail.queue(
        user.email, "Reset your LeadX password", "account_link",
        user_id=user.id, kind="reset_password", title="Reset your password",
        paragraphs=["Someone, probably you, asked to reset the password of your LeadX "
                    "account. Choose a new one with the link below.",
                    f"The link works once, for {minutes} minutes. Setting a new password "
                    "logs you out on every device."],
        link=mail.public_url(path("auth.reset_password_link", token=secret)),
        link_label="Choose a new password",
        footer="If you did not ask for this, ignore this email: your password stays "
               "as it is.")
    audit.record("user.password_reset_requested", actor=None, subject_type="user",
                 subject_id=user.id)


def reset_password(secret: str, new_password: str, *, ip: Optional[str] = None) -> User:
    """Set the password of the link's user and sign out all their sessions. API keys
    stay as they are: they are revoked one by one on their own page."""
    accounts.check_password_strength(new_password)  # before spending the link
    user = use(secret, LinkPurpose.RESET_PASSWORD)
    if not user.is_active:
        raise NotFound("This account is closed.")
    accounts.set_password(user, new_password)
    audit.record("user.password_reset", actor=user, subject_type="user", subject_id=user.id,
                 ip=ip)
    return user
