"""Spot-checks (SPEC §7): an admin verifies a random sample of a batch by contacting
it. The sample is drawn from a stored seed, so anyone can redraw it and see that the
leads checked were the ones chance picked."""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.leads import Batch, Lead
from app.models.types import UTCDateTime, enum_column, utcnow
from app.models.users import User

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class SpotCheckStatus(str, enum.Enum):
    OPEN = "open"
    PASSED = "passed"
    FAILED = "failed"


class Verdict(str, enum.Enum):
    GENUINE = "genuine"
    FAKE = "fake"
    UNREACHABLE = "unreachable"  # not evidence either way: replaced by a new draw
    NO_CONSENT = "no_consent"


DEFECTS = (Verdict.FAKE, Verdict.NO_CONSENT)


class SpotCheck(db.Model):
    __tablename__ = "spot_checks"
    __table_args__ = (
        # At most one open check per batch: two admins cannot sample it twice at once.
        sa.Index("uq_spot_checks_open_batch", "batch_id", unique=True,
                 sqlite_where=sa.text("status = 'open'"),
                 postgresql_where=sa.text("status = 'open'")),
        sa.CheckConstraint("sample_size >= 1 AND sample_size <= lot_size", name="sample_in_lot"),
        sa.CheckConstraint("acceptance_number >= 0 AND acceptance_number < sample_size",
                           name="acceptance_below_sample"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    status: Mapped[SpotCheckStatus] = mapped_column(
        enum_column(SpotCheckStatus, "spot_check_status"), default=SpotCheckStatus.OPEN,
        index=True)
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    # The plan: lot size N, sample size n, acceptance number c, and what it guarantees.
    lot_size: Mapped[int] = mapped_column(sa.Integer)
    sample_size: Mapped[int] = mapped_column(sa.Integer)
    acceptance_number: Mapped[int] = mapped_column(sa.Integer, default=0)
    defect_rate_bp: Mapped[int] = mapped_column(sa.Integer)  # the rate it must catch
    confidence_bp: Mapped[int] = mapped_column(sa.Integer)  # the confidence it is sized for
    plan: Mapped[str] = mapped_column(sa.String(16))  # standard / tightened / strict
    plan_reason: Mapped[str] = mapped_column(sa.Text, default="")
    risk_score: Mapped[Optional[int]] = mapped_column(sa.SmallInteger)  # when it started
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    decision_note: Mapped[str] = mapped_column(sa.Text, default="")
    sales_returned: Mapped[int] = mapped_column(sa.Integer, default=0)

    batch: Mapped[Batch] = relationship()
    created_by: Mapped[Optional[User]] = relationship(foreign_keys=[created_by_id])
    decided_by: Mapped[Optional[User]] = relationship(foreign_keys=[decided_by_id])
    items: Mapped[list["SpotCheckItem"]] = relationship(
        back_populates="check", order_by="SpotCheckItem.position")


class SpotCheckItem(db.Model):
    """One sampled lead and the admin's verdict on it."""

    __tablename__ = "spot_check_items"
    __table_args__ = (
        sa.UniqueConstraint("check_id", "lead_id"),
        sa.UniqueConstraint("check_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    check_id: Mapped[int] = mapped_column(sa.ForeignKey("spot_checks.id"))
    lead_id: Mapped[int] = mapped_column(BIGINT_ID, sa.ForeignKey("leads.id"), index=True)
    # Index in the seeded draw sequence; replacements for unreachable leads come after.
    position: Mapped[int] = mapped_column(sa.Integer)
    verdict: Mapped[Optional[Verdict]] = mapped_column(enum_column(Verdict, "spot_check_verdict"))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    admin_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    check: Mapped[SpotCheck] = relationship(back_populates="items")
    lead: Mapped[Lead] = relationship()
    admin: Mapped[Optional[User]] = relationship()
