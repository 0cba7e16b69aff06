"""A person's say over who contacts them (SPEC §14): a buyer's own suppression list,
a person's opt-out request and the notices that tell each buyer of an opt-out, and
the national do-not-call lists.

Nothing here holds a contact in clear: people are kept as the keyed hashes ingest
computes (ContactVault.dedupe_hash), and an opt-out link as the SHA-256 of its secret."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class BuyerSuppression(db.Model):
    """A person a buyer must never receive: `kind` "e" (email) or "p" (phone) and the
    keyed hash of the normalised contact -- the person hash of app.market.book is
    `kind + value_hash`."""

    __tablename__ = "buyer_suppressions"
    # The market looks people up by hash, for the buyers of a plan.
    __table_args__ = (sa.Index("ix_buyer_suppressions_value_hash", "value_hash"),)

    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                          primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(1), primary_key=True)
    value_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OptOutRequest(db.Model):
    """A person asked to stop being contacted. Until confirmed it is only a pending
    link: the SHA-256 of the emailed secret and the hashes of the contacts given."""

    __tablename__ = "opt_out_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email_hash: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary(16))
    phone_hash: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())


class OptOutNotice(db.Model):
    """A buyer told that a person they bought opted out: they must stop contacting
    them and acknowledge it before `due_at` (10 business days, app.people.opt_out)."""

    __tablename__ = "opt_out_notices"
    __table_args__ = (sa.Index("ix_opt_out_notices_open", "due_at",
                               sqlite_where=sa.text("acknowledged_at IS NULL"),
                               postgresql_where=sa.text("acknowledged_at IS NULL")),)

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    sale_id: Mapped[int] = mapped_column(sa.ForeignKey("sales.id"), unique=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())


class DoNotCallEntry(db.Model):
    """A number on a country's national do-not-call list, loaded by an admin: only the
    keyed hash of its E.164 form (the hash a lead's phone carries)."""

    __tablename__ = "do_not_call_entries"
    __table_args__ = (sa.Index("ix_do_not_call_entries_phone_hash", "phone_hash"),)

    country: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    phone_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
