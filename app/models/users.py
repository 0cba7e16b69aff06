"""Users, their roles and trust levels, their companies, their API keys and their
one-time links."""
import enum
import secrets
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, enum_column, utcnow


class Role(str, enum.Enum):
    SELLER = "seller"
    BUYER = "buyer"
    ADMIN = "admin"


class TrustLevel(str, enum.Enum):
    NEW = "new"
    VERIFIED = "verified"
    SUSPENDED = "suspended"


class CompanyRole(str, enum.Enum):
    OWNER = "owner"    # invites and removes members
    MEMBER = "member"


def new_session_nonce() -> str:
    return secrets.token_hex(8)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint("low_balance_threshold IS NULL OR low_balance_threshold >= 0",
                           name="low_balance_threshold_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"))
    display_name: Mapped[str] = mapped_column(sa.String(120), default="")
    # Only meaningful for sellers (SPEC §2); other roles keep the default.
    trust_level: Mapped[TrustLevel] = mapped_column(
        enum_column(TrustLevel, "trust_level"), default=TrustLevel.NEW
    )
    # A seller's negotiated commission in basis points; None means the exchange's rate.
    commission_rate_bp: Mapped[Optional[int]] = mapped_column(sa.Integer)
    is_active_account: Mapped[bool] = mapped_column(default=True)
    # Part of the login id: rotating it (password change) logs out every other
    # session and invalidates remember-me cookies.
    session_nonce: Mapped[str] = mapped_column(sa.String(32), default=new_session_nonce)
    # None until the owner follows the link emailed at sign-up (SPEC §2).
    email_verified_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Two-factor login (TOTP): the seed encrypted (app.services.crypto.AccountSecrets);
    # set but not enabled while enrolment waits for its first code. The last time step
    # accepted, so a code is never accepted twice.
    totp_secret: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary)
    totp_enabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Stripe: a buyer's Customer (top-ups), a seller's connected account (payouts).
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    stripe_account_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    payouts_enabled: Mapped[bool] = mapped_column(default=False)
    # The zone a buyer's new orders count their caps and schedules in unless they say.
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    # The locale (BCP 47, "ru_RU") notices and emails write amounts and dates in: the
    # browser's at sign-up and at each login.
    locale: Mapped[Optional[str]] = mapped_column(sa.String(35))
    # A buyer is told when their available balance falls below this (minor units).
    low_balance_threshold: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    # A buyer who lets sellers name their company on hosted forms (SPEC §14): the
    # people who agree on such a form agree to be contacted by the buyers named.
    named_on_forms: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Raised with every change to the figures the account's pages aggregate
    # (app/core/figures.py): figures computed at the same revision are still right.
    figures_revision: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")

    # Companies (SPEC §2). The company's account is its founding owner's user: it holds
    # the balance, orders, batches and sales, and `company_name`. A member (or a later
    # owner) signs in as themself and points at it here; app.people.membership.account_of
    # is the one place that says which account a user acts for. A user with no company
    # acts for themself. company_role is None for a user without a company and for a
    # removed member (kept, so the audit log still names them).
    company_name: Mapped[Optional[str]] = mapped_column(sa.String(120), unique=True)
    account_holder_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"),
                                                             index=True)
    company_role: Mapped[Optional[CompanyRole]] = mapped_column(
        enum_column(CompanyRole, "company_role"))

    api_keys: Mapped[list["ApiKey"]] = relationship(back_populates="user")
    account_holder: Mapped[Optional["User"]] = relationship(remote_side=[id])

    def get_id(self) -> str:
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_active(self) -> bool:
        # A member's access ends with their company's account too.
        return self.is_active_account and (self.account_holder is None
                                           or self.account_holder.is_active_account)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def is_seller(self) -> bool:
        return self.role is Role.SELLER

    @property
    def is_buyer(self) -> bool:
        return self.role is Role.BUYER

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role.value}>"


class ApiKey(db.Model):
    """An API key: the secret is shown once; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="api_keys")

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class LinkPurpose(str, enum.Enum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    INVITATION = "invitation"  # joins a company: the invitee chooses a password


class AccountLink(db.Model):
    """A one-time link emailed to a user: only the SHA-256 of its secret is kept, so a
    database reader cannot follow it. Used (or replaced by a newer one) sets used_at."""

    __tablename__ = "account_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[LinkPurpose] = mapped_column(enum_column(LinkPurpose, "link_purpose"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class RecoveryCode(db.Model):
    """A two-factor recovery code: shown once, kept as SHA-256 (80 random bits each,
    out of reach of guessing even offline), good for one login."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
