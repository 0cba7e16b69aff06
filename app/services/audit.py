"""Recording audit events for admin actions and views of contact data.

An entry names the person who acted: a company's member acts for the company's
account (app.people.companies), and the operations are handed that account, so the
sign-in (web and API) says who is acting in the request and the entry names them."""
from typing import Any, Optional

from flask import g, has_app_context

from app.extensions import db
from app.models import AuditEvent, User


def act_as(user: User) -> None:
    """Remember who is signed in for this request (the web's and the API's sign-in)."""
    g.acting_member = user


def _named(actor: Optional[User]) -> Optional[User]:
    """The member acting for `actor`'s account in this request, else `actor`."""
    member = g.get("acting_member") if has_app_context() else None
    if actor is not None and member is not None and member.account_holder_id == actor.id:
        return member
    return actor


def record(
    action: str,
    *,
    actor: Optional[User],
    subject_type: str = "",
    subject_id: Optional[int] = None,
    details: Optional[dict[str, Any]] = None,
    ip: Optional[str] = None,
) -> AuditEvent:
    actor = _named(actor)
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor else None,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details or {},
        ip=ip,
    )
    db.session.add(event)
    db.session.flush()
    return event
