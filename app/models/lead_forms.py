"""Hosted lead forms, their versions and the exchange's consent certificates (SPEC §14).

A form's words that the person reads and agrees to (fields, consent text, the buyers
disclosed) live in versions: editing them adds a version, and a certificate names the
exact version its person was shown. A certificate holds no contact: the person's IP,
like their name and phone, stays in the lead's sealed blob; the certificate keeps a
keyed hash that ties it to the contacts its buyers received.

A version may name buyers of the exchange instead of describing kinds of buyer: then
the person agreed to be contacted by those buyers alone, and the version's leads go
to no one else (app.market.rules.buyer_may_take)."""
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class LeadForm(db.Model):
    __tablename__ = "lead_forms"
    __table_args__ = (
        sa.CheckConstraint("cap >= 1", name="cap_positive"),
        sa.CheckConstraint("floor_price >= 0", name="floor_price_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    # The terms its leads are sold on, as a real-time lead's (SPEC §11 POST /leads).
    default_country: Mapped[str] = mapped_column(sa.String(2))
    floor_price: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cap: Mapped[int] = mapped_column(sa.Integer, default=1)
    sub_id: Mapped[Optional[str]] = mapped_column(sa.String(255))
    thank_you_message: Mapped[str] = mapped_column(sa.Text, default="")
    thank_you_url: Mapped[Optional[str]] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    versions: Mapped[list["LeadFormVersion"]] = relationship(
        back_populates="form", order_by="LeadFormVersion.number")

    @property
    def current(self) -> "LeadFormVersion":
        return self.versions[-1]


class LeadFormVersion(db.Model):
    __tablename__ = "lead_form_versions"
    __table_args__ = (sa.UniqueConstraint("form_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(sa.ForeignKey("lead_forms.id"))
    number: Mapped[int] = mapped_column(sa.Integer)
    # [{"name": a SPEC §3 field, "required": bool}] in the order shown.
    fields: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    consent_text: Mapped[str] = mapped_column(sa.Text)
    # The buyers, or kinds of buyer, the person is told may contact them; one a line.
    disclosed_buyers: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    form: Mapped[LeadForm] = relationship(back_populates="versions")
    named_buyers: Mapped[list["NamedBuyer"]] = relationship(order_by="NamedBuyer.buyer_id",
                                                            cascade="all, delete-orphan")

    @property
    def named_buyer_ids(self) -> tuple[int, ...]:
        return tuple(named.buyer_id for named in self.named_buyers)


class NamedBuyer(db.Model):
    """A buyer account a form version names: the only ones its leads may be sold to."""
    __tablename__ = "lead_form_named_buyers"

    version_id: Mapped[int] = mapped_column(sa.ForeignKey("lead_form_versions.id"),
                                            primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)


class ConsentCertificate(db.Model):
    __tablename__ = "consent_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    lead_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("leads.id"),
        unique=True)
    form_version_id: Mapped[int] = mapped_column(sa.ForeignKey("lead_form_versions.id"),
                                                 index=True)
    # The one-time token of the form as served: a replayed submission finds it taken.
    form_token: Mapped[str] = mapped_column(sa.String(32), unique=True)
    page_url: Mapped[str] = mapped_column(sa.Text)
    referrer: Mapped[Optional[str]] = mapped_column(sa.Text)
    user_agent: Mapped[str] = mapped_column(sa.String(512), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Time on page as the visitor's browser measured it, and as the exchange saw it
    # (form served to form received), which a script cannot shorten.
    time_on_page_ms: Mapped[Optional[int]] = mapped_column(sa.Integer)
    served_ms: Mapped[int] = mapped_column(sa.Integer)
    # field name -> "typed", "pasted", "typed and pasted" or "autofilled".
    inputs: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    contact_hash: Mapped[str] = mapped_column(sa.String(64))

    version: Mapped[LeadFormVersion] = relationship()
