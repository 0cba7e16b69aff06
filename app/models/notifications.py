"""Notifications (SPEC §13): what a user is told in the app, what they chose to be
told and how, and the outgoing email that carries it (also kept as the development
outbox when no MAIL_SERVER is set)."""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, enum_column, utcnow

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class NotificationKind(str, enum.Enum):
    BATCH_PROCESSED = "batch_processed"
    SPOT_CHECK_DECIDED = "spot_check_decided"
    RETURN_TO_ANSWER = "return_to_answer"
    RETURN_DECIDED = "return_decided"
    RETURN_CONTESTED = "return_contested"  # an admin must decide it
    ORDER_FILLED = "order_filled"
    LOW_BALANCE = "low_balance"
    DELIVERY_FAILING = "delivery_failing"
    PAYOUT_SENT = "payout_sent"
    PERSON_ERASED = "person_erased"


class Notification(db.Model):
    """One thing a user was told. Title and body are written when it is raised, in
    words that carry no contact data: the link leads to the page that may show more."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_user_id_id", "user_id", "id"),
        # The navigation bar counts a user's unread ones on every page.
        sa.Index("ix_notifications_unread", "user_id",
                 sqlite_where=sa.text("read_at IS NULL"),
                 postgresql_where=sa.text("read_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[NotificationKind] = mapped_column(enum_column(NotificationKind,
                                                               "notification_kind"))
    # What it is about ("order:12"): an unread one about the same thing is not repeated.
    subject: Mapped[str] = mapped_column(sa.String(64), default="")
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    link: Mapped[str] = mapped_column(sa.String(500), default="")
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class NotificationSetting(db.Model):
    """A user's choice for one kind; without a row, both ways are on."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    kind: Mapped[NotificationKind] = mapped_column(
        enum_column(NotificationKind, "notification_setting_kind"), primary_key=True)
    in_app: Mapped[bool] = mapped_column(default=True)
    email: Mapped[bool] = mapped_column(default=True)


class EmailStatus(str, enum.Enum):
    PENDING = "pending"  # to send (again) at next_attempt_at
    SENT = "sent"  # the SMTP server took it
    FAILED = "failed"  # refused for good, or every retry used
    KEPT = "kept"  # no MAIL_SERVER (development): kept in the outbox, never sent


class OutgoingEmail(db.Model):
    """One email, stored with the change that caused it, so it is never lost while the
    SMTP server is down; a job sends it and retries with backoff."""

    __tablename__ = "outgoing_emails"
    __table_args__ = (
        sa.Index("ix_outgoing_emails_due", "status", "next_attempt_at"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    user_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40), default="")
    to: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(255))
    # Encrypted: a delivery by email carries the leads' contacts (app.core.mail), and a
    # notice may quote what people wrote of them; OutgoingEmailLead names those leads,
    # and an erasure clears the bodies.
    text_body_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    html_body_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # Fixed when queued: a retry after a lost answer is the same message to the reader.
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    status: Mapped[EmailStatus] = mapped_column(enum_column(EmailStatus, "email_status"),
                                                default=EmailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[Optional[str]] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())


class OutgoingEmailLead(db.Model):
    """A lead whose person a stored message carries: their contacts (a delivery by
    email) or words that may name them (a notice quoting a note on them, or a buyer's
    system's refusal of them). An erasure finds the messages to clear by it, and the
    outbox audits a view of a message that has any (SPEC §7)."""

    __tablename__ = "outgoing_email_leads"

    email_id: Mapped[int] = mapped_column(
        BIGINT_ID, sa.ForeignKey("outgoing_emails.id", ondelete="CASCADE"), primary_key=True)
    lead_id: Mapped[int] = mapped_column(BIGINT_ID, sa.ForeignKey("leads.id"),
                                         primary_key=True, index=True)
