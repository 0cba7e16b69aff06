"""Notifications, queries (read only): a user's list, their unread count (the
navigation bar), their choices; and the development outbox of emails."""
from functools import cache
from typing import Optional

import sqlalchemy as sa
from flask import g

from app.extensions import db
from app.models import Notification, NotificationKind, NotificationSetting, OutgoingEmail, User
from app.people.notifications import kinds_for


def _unread_of(user_id) -> sa.ScalarSelect:
    return sa.select(sa.func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)).scalar_subquery()


def unread_count(user_id: int) -> int:
    return db.session.scalar(sa.select(_unread_of(user_id)))


@cache
def _user_with_unread() -> sa.Select:
    # Built once: composing it cost as much as running it, on every page.
    return sa.select(User, _unread_of(User.id)).where(User.id == sa.bindparam("user_id"))


def user_with_unread_count(user_id: int) -> Optional[User]:
    """The user, read with their unread count in one query: a page's sign-in and its
    navigation bar cost one round trip, not two. The count is kept for this request
    (navigation_unread_count)."""
    row = db.session.execute(_user_with_unread(), {"user_id": user_id}).first()
    if row is None:
        return None
    g.unread_notifications = (user_id, row[1])
    return row[0]


def navigation_unread_count(user_id: int) -> int:
    """The count read at sign-in in this request if there was one, else read now (once
    per request)."""
    kept = g.get("unread_notifications")
    if kept is None or kept[0] != user_id:
        kept = g.unread_notifications = (user_id, unread_count(user_id))
    return kept[1]


def notifications_for(user: User, limit: int = 50, offset: int = 0,
                      unread_only: bool = False) -> list[Notification]:
    """Newest first."""
    query = sa.select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return list(db.session.scalars(query.order_by(Notification.id.desc())
                                   .limit(limit).offset(offset)))


def choices_for(user: User) -> dict[NotificationKind, tuple[bool, bool]]:
    """(in the app, by email) for each kind of the user's role; on unless they said."""
    stored = {s.kind: (s.in_app, s.email) for s in db.session.scalars(
        sa.select(NotificationSetting).where(NotificationSetting.user_id == user.id))}
    return {kind: stored.get(kind, (True, True)) for kind in kinds_for(user.role)}


def outbox(limit: int = 50, offset: int = 0) -> list[OutgoingEmail]:
    return list(db.session.scalars(sa.select(OutgoingEmail).order_by(OutgoingEmail.id.desc())
                                   .limit(limit).offset(offset)))


def outgoing_email(email_id: int) -> Optional[OutgoingEmail]:
    return db.session.get(OutgoingEmail, email_id)
