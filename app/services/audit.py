"""Recording audit events (operations: add and flush; callers commit): admin actions,
views of contact data, and what a company's people do with its account (SPEC §2),
which its owners read (`company_activity`, a query).

An entry names the person who acted: a company's member acts for the company's
account (app.people.companies), and the operations are handed that account, so the
sign-in (web and API) says who is acting in the request and the entry names them,
with the account they acted for and, through the API, the key they used. Details
are a short summary safe to show: never a secret, a URL's path or credentials (only
its host: `host_of`), nor a lead's contacts."""
from typing import Any, Optional
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import g, has_app_context
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import ApiKey, AuditEvent, User


def act_as(user: User, key: Optional[ApiKey] = None) -> None:
    """Remember who is signed in for this request (the web's and the API's sign-in),
    and the API key they signed in with."""
    g.acting_member = user
    # Read now, while the key is loaded: a commit later in the request may expire it.
    g.acting_key = None if key is None else {"id": key.id, "name": key.name}


def _named(actor: Optional[User]) -> Optional[User]:
    """The member acting for `actor`'s account in this request, else `actor`."""
    member = g.get("acting_member") if has_app_context() else None
    if actor is not None and member is not None and member.account_holder_id == actor.id:
        return member
    return actor


def host_of(url: Optional[str]) -> Optional[str]:
    """Where a URL points, without its credentials, path or query (which may carry
    tokens): what an entry may say about a delivery or bid URL."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return parts.hostname + (f":{parts.port}" if parts.port else "")
    except (TypeError, ValueError):
        return "(not a URL)"


def record(
    action: str,
    *,
    actor: Optional[User],
    subject_type: str = "",
    subject_id: Optional[int] = None,
    details: Optional[dict[str, Any]] = None,
    ip: Optional[str] = None,
) -> AuditEvent:
    """Add an entry. `actor` is the account acted for (or the admin, or None for the
    system); the entry names the member acting for it in this request."""
    person = _named(actor)
    details = dict(details or {})
    if person is not None and person.id != actor.id:
        details["account"] = actor.id
    signed_in = g.get("acting_member") if has_app_context() else None
    if person is not None and signed_in is not None and signed_in.id == person.id \
            and g.get("acting_key") is not None:
        details["api_key"] = g.acting_key
    event = AuditEvent(
        action=action,
        actor_id=person.id if person else None,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
        ip=ip,
    )
    db.session.add(event)
    db.session.flush()
    return event


def company_activity(account: User, *, limit: int, offset: int = 0) -> list[AuditEvent]:
    """What the account's people did (its own user, and everyone ever invited into its
    company, removed members too), newest first (reads only)."""
    people = sa.select(User.id).where(sa.or_(User.id == account.id,
                                             User.account_holder_id == account.id))
    return list(db.session.scalars(
        sa.select(AuditEvent).options(joinedload(AuditEvent.actor))
        .where(AuditEvent.actor_id.in_(people))
        .order_by(AuditEvent.id.desc()).limit(limit).offset(offset)))


def account_names(events: list[AuditEvent]) -> dict[int, str]:
    """The accounts members acted for in these entries, as pages name them: the
    company's name, else the user's (one query)."""
    ids = {e.details.get("account") for e in events} - {None}
    if not ids:
        return {}
    return {user_id: company or name or email for user_id, company, name, email in
            db.session.execute(sa.select(User.id, User.company_name, User.display_name,
                                         User.email).where(User.id.in_(ids)))}
