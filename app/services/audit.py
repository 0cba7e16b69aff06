"""Recording audit events for admin actions and views of contact data."""
from typing import Any, Optional

from app.extensions import db
from app.models import AuditEvent, User


def record(
    action: str,
    *,
    actor: Optional[User],
    subject_type: str = "",
    subject_id: Optional[int] = None,
    details: Optional[dict[str, Any]] = None,
    ip: Optional[str] = None,
) -> AuditEvent:
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
