"""Companies and their members (SPEC §2), operations (flush; callers commit).

A seller or buyer account is a company: its account is the founding owner's user,
which holds the balance, the orders, batches, sales and receipts, and the company's
name. Members (and owners invited later) sign in as themselves and act for that
account: `membership.account_of` is the one place that says which account a user acts
for, and every page and API route resolves its caller through it. A user without a
company acts for themself, as before.

The person signed in is remembered for the request (app.services.audit.act_as), so
that the audit log names the member, not the account they acted for. Invitations
are one-time links (app.people.account_links): the invitee chooses a password, which
also proves the address. Removing a member ends their sessions and API keys at once."""
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from app.core import mail
from app.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import AccountLink, ApiKey, CompanyRole, LinkPurpose, Role, User
from app.models.types import utcnow
from app.models.users import new_session_nonce
from app.people import account_links
from app.people.membership import account_of, is_owner
from app.people.notifications import path
from app.services import accounts, audit

MAX_NAME_LENGTH = 120


def company_by_name(name: str) -> User:
    account = db.session.scalar(sa.select(User).where(User.company_name == name.strip()))
    if account is None:
        raise NotFound(f"No company named {name.strip()!r}.")
    return account


def name_company(account: User, name: str) -> None:
    """Make the user's own account a company with this name, owned by them."""
    name = " ".join(name.split())
    if account.account_holder_id is not None or account.company_name:
        raise Conflict("This account already belongs to a company.", code="company_exists")
    if account.role not in accounts.PUBLIC_ROLES:
        raise ValidationFailed("Only seller and buyer accounts are companies.",
                               code="role_not_allowed")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"Give the company a name of 1 to {MAX_NAME_LENGTH} characters.",
                               code="invalid_company_name", details={"field": "company"})
    if db.session.scalar(sa.select(User.id).where(User.company_name == name)):
        raise Conflict("A company with this name exists already.", code="company_name_taken",
                       details={"field": "company"})
    account.company_name = name
    account.company_role = CompanyRole.OWNER
    db.session.flush()


def _check_owner(actor: Optional[User]) -> None:
    if actor is not None and not is_owner(actor):
        raise Forbidden("Only an owner of the company invites and removes members.",
                        code="not_an_owner")


def invite(account: User, email: str, role: CompanyRole | str = CompanyRole.MEMBER, *,
           actor: Optional[User]) -> User:
    """Invite someone into the company by email (actor: the owner inviting, None for
    the CLI). They join as a user of the company's role once they accept; inviting
    again sends a new link and voids the older one."""
    _check_owner(actor)
    role = CompanyRole(role)
    if not account.company_name:
        raise ValidationFailed("Name the company before inviting members.",
                               code="company_required", details={"field": "company"})
    email = accounts.normalise_email(email)
    invitee = accounts.find_user_by_email(email)
    if invitee is None:
        invitee = User(email=email, password_hash="!", role=account.role,
                       display_name=email.split("@")[0], is_active_account=False,
                       account_holder_id=account.id)
        db.session.add(invitee)
    elif invitee.account_holder_id != account.id or (
            invitee.company_role is not None and invitee.email_verified_at is not None):
        # Someone else's account, or already a member: an address signs in to one account.
        raise Conflict("This address already has a LeadX account.", code="email_taken",
                       details={"field": "email"})
    else:  # invited before, or removed and now invited back
        invitee.is_active_account = False
    invitee.company_role = role
    db.session.flush()
    secret = account_links.issue(invitee, LinkPurpose.INVITATION)
    days = current_app.config["INVITATION_DAYS"]
    inviter = actor.display_name if actor is not None else "An administrator"
    mail.queue(
        invitee.email, f"Join {account.company_name} on LeadX", "account_link",
        user_id=invitee.id, kind="invitation", title=f"Join {account.company_name} on LeadX",
        paragraphs=[f"{inviter} invites you to join {account.company_name} on LeadX as "
                    f"{'an owner' if role is CompanyRole.OWNER else 'a member'}: you will "
                    f"share its balance, orders, batches and reports, and sign in with "
                    f"your own password.",
                    f"The link works once, for {days} days."],
        link=mail.public_url(path("auth.invitation_link", token=secret)),
        link_label="Join the company",
        footer="If you do not expect this, ignore this email: no account is made.")
    audit.record("company.member_invited", actor=actor, subject_type="user",
                 subject_id=invitee.id, details={"company": account.company_name,
                                                 "email": invitee.email, "role": role.value})
    return invitee


def invitation(secret: str) -> User:
    """Who the link invites, if it still works (reads only)."""
    return account_links.check(secret, LinkPurpose.INVITATION).user


def accept(secret: str, password: str, display_name: str = "", *, timezone: str = "UTC") -> User:
    """Join the company: the link's invitee chooses a password, which also proves the
    address, and can sign in from now on; `timezone` is their own (their browser's), in
    which pages show them times."""
    accounts.check_password_strength(password)  # before spending the link
    user = account_links.use(secret, LinkPurpose.INVITATION)
    if user.company_role is None:
        raise NotFound("This invitation was withdrawn.")
    accounts.set_password(user, password)
    if display_name.strip():
        user.display_name = display_name.strip()[:120]
    user.timezone = accounts.check_timezone(timezone)
    user.is_active_account = True
    user.email_verified_at = user.email_verified_at or utcnow()
    audit.record("company.member_joined", actor=user, subject_type="user", subject_id=user.id,
                 details={"company": account_of(user).company_name})
    db.session.flush()
    return user


def remove(account: User, member_id: int, *, actor: User) -> User:
    """Take a person out of the company (or withdraw their invitation): their sessions
    and API keys stop working at once, their pending links are void."""
    _check_owner(actor)
    member = db.session.get(User, member_id)
    if member is None or member.account_holder_id != account.id or member.company_role is None:
        raise NotFound("No such member.")
    now = utcnow()
    member.company_role = None
    member.is_active_account = False
    member.session_nonce = new_session_nonce()
    db.session.execute(sa.update(ApiKey).where(ApiKey.user_id == member.id,
                                               ApiKey.revoked_at.is_(None))
                       .values(revoked_at=now).execution_options(synchronize_session=False))
    db.session.execute(sa.update(AccountLink).where(AccountLink.user_id == member.id,
                                                    AccountLink.used_at.is_(None))
                       .values(used_at=now).execution_options(synchronize_session=False))
    audit.record("company.member_removed", actor=actor, subject_type="user",
                 subject_id=member.id, details={"company": account.company_name,
                                                "email": member.email})
    db.session.flush()
    return member


def create_with_company(email: str, password: str, role: Role | str, company: str, *,
                        display_name: str = "") -> User:
    """A new user owning a new company (`flask users create --company`)."""
    user = accounts.create_user(email, password, role, display_name=display_name)
    name_company(user, company)
    return user
