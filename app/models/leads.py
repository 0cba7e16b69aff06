"""Batches, leads, rejected rows and the suppression list (SPEC §3).

A lead's contacts are stored only encrypted, as one AES-GCM blob (`contact_enc`, see
ContactVault.seal_contact); duplicates are found through keyed hashes (`email_hash`,
`phone_hash`), never by decrypting."""
import enum
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, checked_by_trigger, enum_column, utcnow
from app.models.users import User


class BatchStatus(str, enum.Enum):
    PROCESSING = "processing"
    HELD = "held"  # seller is `new`: waits for a passed spot-check
    LIVE = "live"  # offered to the matcher
    REJECTED = "rejected"  # failed its spot-check, or nothing in it was acceptable
    FAILED = "failed"  # the file could not be processed; nothing of it is kept


class BatchSource(str, enum.Enum):
    UPLOAD = "upload"
    API = "api"  # single leads posted in real time, grouped per seller and day


class LeadStatus(str, enum.Enum):
    # An upload stores its leads with the status they will have; while their batch is
    # `processing` they are invisible all the same (`Lead.offered`), and the batch's
    # own status change makes the whole file visible at once.
    HELD = "held"
    LIVE = "live"
    DELISTED = "delisted"  # erased, suppressed, its batch failed a spot-check, seller suspended
    PAUSED = "paused"  # the seller paused it; a resume lists it again as its batch is
    WITHDRAWN = "withdrawn"  # the seller withdrew it: never offered again


# A lead in one of these may still be sold, now or later (a passed spot-check, a
# resume); DELISTED and WITHDRAWN are final.
LISTED_STATUSES = (LeadStatus.HELD, LeadStatus.LIVE, LeadStatus.PAUSED)


class Batch(db.Model):
    __tablename__ = "batches"
    __table_args__ = (
        sa.CheckConstraint("cap >= 1", name="cap_positive"),
        sa.CheckConstraint("floor_price >= 0", name="floor_price_not_negative"),
        sa.Index("ix_batches_seller_id_content_hash", "seller_id", "content_hash"),
        sa.UniqueConstraint("seller_id", "api_day"),  # one real-time batch a seller a day
        # What a lead's (batch_id, seller_id) refers to: its seller is its batch's.
        sa.Index("ix_batches_id_seller_id", "id", "seller_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    source: Mapped[BatchSource] = mapped_column(
        enum_column(BatchSource, "batch_source"), default=BatchSource.UPLOAD
    )
    status: Mapped[BatchStatus] = mapped_column(
        enum_column(BatchStatus, "batch_status"), default=BatchStatus.PROCESSING, index=True
    )
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    content_hash: Mapped[Optional[str]] = mapped_column(sa.String(64))
    file_size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # How the file was written: its rejected rows go back in the same shape.
    file_format: Mapped[str] = mapped_column(sa.String(8), default="csv", server_default="csv")
    encoding: Mapped[Optional[str]] = mapped_column(sa.String(32))  # a CSV's
    delimiter: Mapped[Optional[str]] = mapped_column(sa.String(4))
    default_country: Mapped[str] = mapped_column(sa.String(2))
    floor_price: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cap: Mapped[int] = mapped_column(sa.Integer, default=1)
    mapping: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    # Progress: rows read so far (the resume point) and the verdict counts.
    rows_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_processed: Mapped[int] = mapped_column(sa.Integer, default=0)
    bytes_processed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected: Mapped[int] = mapped_column(sa.Integer, default=0)
    cross_seller_duplicates: Mapped[int] = mapped_column(sa.Integer, default=0)
    error_code: Mapped[Optional[str]] = mapped_column(sa.String(64))
    error_message: Mapped[Optional[str]] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Last sign of life of the job processing it: a stale one is resumed elsewhere.
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Real-time leads are grouped per seller and UTC day.
    api_day: Mapped[Optional[str]] = mapped_column(sa.String(10))
    # Authenticity (SPEC §7, app/services/quality.py): 0-100 and the signals behind it,
    # computed once the batch is processed; None until then.
    risk_score: Mapped[Optional[int]] = mapped_column(sa.SmallInteger, index=True)
    risk_signals: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(sa.JSON)
    risk_assessed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    risk_leads: Mapped[Optional[int]] = mapped_column(sa.Integer)  # leads it looked at
    # The seller's record as a lead-score part (services.scoring) when the batch began;
    # real-time leads of the day take it from here.
    seller_points: Mapped[int] = mapped_column(sa.SmallInteger, default=8, server_default="8")

    seller: Mapped[User] = relationship()

    @property
    def terms_per_lead(self) -> bool:
        """A real-time batch's leads each carry the floor and cap their post gave (the
        batch's own are its first lead's); an upload's leads carry the batch's."""
        return self.source is BatchSource.API

    @property
    def progress(self) -> float:
        """0.0–1.0 by bytes read, the one measure known before the last row."""
        if self.status is not BatchStatus.PROCESSING:
            return 1.0
        if not self.file_size:
            return 0.0
        return min(self.bytes_processed / self.file_size, 0.99)

    @property
    def is_finished(self) -> bool:
        return self.status is not BatchStatus.PROCESSING


class Lead(db.Model):
    __tablename__ = "leads"
    __table_args__ = (
        sa.CheckConstraint("cap >= 1", name="cap_positive"),
        sa.CheckConstraint("sold_count >= 0 AND sold_count <= cap", name="sold_within_cap"),
        sa.CheckConstraint("has_email OR has_phone", name="has_contact"),
        sa.Index("ix_leads_batch_id_row_number", "batch_id", "row_number"),
        # One reference instead of one to the batch and one to the seller: a lead's
        # seller is its batch's, and every stored lead costs one key check, not two
        # (a sixth of PostgreSQL's work per row at ingest). PostgreSQL checks both
        # references once per statement instead (types.checked_by_trigger).
        sa.ForeignKeyConstraint(["batch_id", "seller_id"], ["batches.id", "batches.seller_id"],
                                info=checked_by_trigger()),
        sa.ForeignKeyConstraint(["consent_scope_id"], ["lead_form_versions.id"],
                                info=checked_by_trigger()),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    batch_id: Mapped[int] = mapped_column()
    seller_id: Mapped[int] = mapped_column()  # no query needs an index
    # Not indexed on its own: ix_leads_status_consent_day leads with it.
    status: Mapped[LeadStatus] = mapped_column(enum_column(LeadStatus, "lead_status"))
    row_number: Mapped[int] = mapped_column(sa.Integer, default=0)

    contact_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)  # name, email, phone, ip
    # Found by contact through contact_keys (app/models/contact_keys.py), not an index.
    email_hash: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary(16))
    phone_hash: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary(16))
    has_email: Mapped[bool] = mapped_column(default=False)
    has_phone: Mapped[bool] = mapped_column(default=False)

    age: Mapped[Optional[int]] = mapped_column(sa.SmallInteger)
    gender: Mapped[str] = mapped_column(sa.String(8), default="unknown")
    region: Mapped[Optional[str]] = mapped_column(sa.String(8), index=True)
    country: Mapped[Optional[str]] = mapped_column(sa.String(2))
    marital_status: Mapped[str] = mapped_column(sa.String(16), default="unknown")
    employed: Mapped[str] = mapped_column(sa.String(8), default="unknown")
    interests: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    budget: Mapped[Optional[str]] = mapped_column(sa.String(255))
    authority: Mapped[Optional[str]] = mapped_column(sa.String(255))
    need: Mapped[Optional[str]] = mapped_column(sa.String(255))
    timeframe: Mapped[Optional[str]] = mapped_column(sa.String(255))

    consent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_url: Mapped[str] = mapped_column(sa.Text)
    consent_text: Mapped[Optional[str]] = mapped_column(sa.Text)
    # Third-party consent certificates, shape-checked (SPEC §3). Like the consent page
    # they are evidence of consent, not contacts: opaque ids, kept in clear.
    trustedform_cert_url: Mapped[Optional[str]] = mapped_column(sa.String(128))
    jornaya_leadid: Mapped[Optional[str]] = mapped_column(sa.String(36))
    # The seller's own source, campaign or page: every figure is broken down by it.
    sub_id: Mapped[Optional[str]] = mapped_column(sa.String(255))
    # Location below the region: demographics like it, not contacts.
    city: Mapped[Optional[str]] = mapped_column(sa.String(255))
    postal_code: Mapped[Optional[str]] = mapped_column(sa.String(16))

    # SPEC §14: the form version whose named buyers alone the person agreed to be
    # contacted by (None: any buyer). Fixed at submission, like the consent.
    consent_scope_id: Mapped[Optional[int]] = mapped_column()  # lead_form_versions.id
    cross_seller_duplicate: Mapped[bool] = mapped_column(default=False)
    # SPEC §14: the phone is on its country's national do-not-call list
    # (app.services.do_not_call): never sold for phone contact, has_phone is off.
    do_not_call: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Set when the person's contacts were destroyed (erasure request or retention).
    erased_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    floor_price: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cap: Mapped[int] = mapped_column(sa.Integer, default=1)
    sold_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The lead score's parts that do not decay (services.scoring): the lead's own
    # completeness and intent, fixed at ingest, and its seller's record, refreshed
    # periodically for unsold inventory. Freshness is added at query time from consent_at.
    score_base: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")
    seller_points: Mapped[int] = mapped_column(sa.SmallInteger, default=8, server_default="8")

    batch: Mapped[Batch] = relationship()

    @classmethod
    def consented_since(cls, moment: datetime) -> sa.ColumnElement[bool]:
        """SQL: consent at or after `moment`, said of the day too, so that the range
        is one of ix_leads_status_consent_day (a lookback window)."""
        return sa.and_(utc_day(cls.consent_at) >= utc_day(sa.literal(moment, UTCDateTime())),
                       cls.consent_at >= moment)

    @classmethod
    def consented_up_to(cls, moment: datetime) -> sa.ColumnElement[bool]:
        """SQL: the day bound of a cursor at `moment` (freshest first, see above)."""
        return utc_day(cls.consent_at) <= utc_day(sa.literal(moment, UTCDateTime()))

    @classmethod
    def offered(cls) -> sa.ColumnElement[bool]:
        """SQL: the lead may be offered to buyers (before caps and filters): it is live
        and its batch has finished processing."""
        return sa.and_(cls.status == LeadStatus.LIVE, cls.batch_id.not_in(
            sa.select(Batch.id).where(Batch.status == BatchStatus.PROCESSING)))


class utc_day(sa.sql.functions.FunctionElement):
    """SQL: the UTC calendar day of a stored time, as each database can index it
    (UTCDateTime is UTC text on SQLite; `timezone('UTC', ...)` is immutable on
    PostgreSQL, where the cast of a timestamptz to date is not)."""

    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element, compiler, **kw):
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw):
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


# Freshest inventory first (rule 4): leads by status and consent day. An upload's
# consent times are spread over months or years, and an index on the times themselves
# took every new lead to a random page (storing the bench file's rows on SQLite without
# the hash indexes: 20.3 µs a row with it, 16.9 with this one); here a new lead lands
# at the end of its day, a few hundred places in all. Queries order by (day,
# consent_at, id), which is the order of (consent_at, id), and sort within a day only.
# No id in the key, as that sort needs none (and SQLite keys every index by the rowid,
# which is the id, anyway): PostgreSQL then stores a day as one key with a list of
# rows, which took 1.3-1.7 µs less of its CPU per stored lead (bench/storing.py).
sa.Index("ix_leads_status_consent_day", Lead.status, utc_day(Lead.consent_at))


class Rejection(db.Model):
    """A row that did not become a lead, with the reason the seller reads."""

    __tablename__ = "rejections"
    __table_args__ = (sa.Index("ix_rejections_batch_id_row_number", "batch_id", "row_number"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"))
    row_number: Mapped[int] = mapped_column(sa.Integer)
    code: Mapped[str] = mapped_column(sa.String(32), index=True)  # the first reason
    # Every reason of the row, ";"-joined (SPEC §3: a rejected row lists them all).
    codes: Mapped[str] = mapped_column(sa.String(255), server_default="")
    # Encrypted like the original cells: a rejected row still holds someone's contacts,
    # and the message quotes the offending value.
    message_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    raw_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)


class SuppressionEntry(db.Model):
    """A person who must never be sold: stored only as the keyed hash (SPEC §7)."""

    __tablename__ = "suppression_entries"
    __table_args__ = (sa.UniqueConstraint("kind", "value_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))  # "email" or "phone"
    value_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(16))
    reason: Mapped[str] = mapped_column(sa.String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
