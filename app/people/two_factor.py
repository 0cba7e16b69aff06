"""Two-factor login with an authenticator app (TOTP, RFC 6238), operations (flush;
callers commit): enrolment, the second step of a login, recovery codes, switching
it off (SPEC §2). Required for admins, optional for sellers and buyers.

The seed is stored encrypted (app.services.crypto.AccountSecrets). A code is accepted
for its 30-second step and the steps either side (clocks drift), and never twice:
the last step accepted is kept, and accepting one is a conditional UPDATE, so even two
logins racing with the same code cannot both pass. Ten recovery codes are shown once,
kept as SHA-256, each good for one login. The QR code is drawn here, as SVG (segno):
the seed never leaves the server except in the page shown to its owner."""
import base64
import hashlib
import re
import secrets
from datetime import datetime
from typing import Optional

import pyotp
import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.errors import Conflict, Forbidden, ValidationFailed
from app.extensions import db
from app.models import RecoveryCode, User
from app.models.types import utcnow
from app.services import accounts, audit
from app.services.crypto import account_secrets

ISSUER = "LeadX"
RECOVERY_CODE_COUNT = 10
TOTP_DIGITS = re.compile(r"\d{6}")


def required(user: User) -> bool:
    """Admins must sign in with a second factor; others may choose to."""
    return user.is_admin


def _context(user: User) -> str:
    return f"totp:{user.id}"


def _seed(user: User) -> str:
    return account_secrets().open(user.totp_secret, _context(user))


def _wrong_code() -> ValidationFailed:
    return ValidationFailed("That code is not right, or was used already: enter the current "
                            "code from your app, or an unused recovery code.",
                            code="wrong_code", details={"field": "code"})


# Enrolment ---------------------------------------------------------------------------

def start_enrolment(user: User, seed: Optional[str] = None) -> str:
    """A new seed for the user, waiting for its first code (`confirm_enrolment`).
    `seed` is for the demo admin only, whose seed is published with the demo."""
    if user.two_factor_enabled:
        raise Conflict("Two-factor login is on already.", code="two_factor_enabled")
    seed = seed or pyotp.random_base32()
    user.totp_secret = account_secrets().seal(seed, _context(user))
    user.totp_last_step = None
    db.session.flush()
    return seed


def pending_seed(user: User) -> Optional[str]:
    """The seed of an enrolment not yet confirmed, to show again on reload."""
    if user.totp_secret is None or user.two_factor_enabled:
        return None
    return _seed(user)


def provisioning_uri(user: User, seed: str) -> str:
    return pyotp.TOTP(seed).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_code_svg(uri: str) -> str:
    """The QR code of `uri` as an SVG data URI (an <img> the strict CSP allows)."""
    import segno  # only the enrolment page draws a QR code

    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def enable_with_seed(user: User, seed: str) -> None:
    """Two-factor login on with a known seed, no code asked: for the demo admin only,
    whose seed is published with the demo data (app/services/demo.py)."""
    start_enrolment(user, seed)
    user.totp_enabled_at = utcnow()
    _new_recovery_codes(user)


def current_code(seed: str) -> str:
    return pyotp.TOTP(seed).now()


def confirm_enrolment(user: User, code: str) -> list[str]:
    """Turn two-factor login on once the app shows a right code; the recovery codes,
    in clear for this once."""
    if user.totp_secret is None or user.two_factor_enabled:
        raise Conflict("Start the enrolment again.", code="no_enrolment")
    if not _accept_totp(user, code):
        raise _wrong_code()
    user.totp_enabled_at = utcnow()
    codes = _new_recovery_codes(user)
    audit.record("user.two_factor_enabled", actor=user, subject_type="user", subject_id=user.id)
    return codes


# Signing in ---------------------------------------------------------------------------

def verify(user: User, code: str) -> Optional[str]:
    """For the second step of a login: "totp" or "recovery" if the code is right (and
    now spent), None if not. A wrong code is audited: whoever typed it knew the
    password, which admins reviewing the audit log should see."""
    if not user.two_factor_enabled:
        return None
    code = (code or "").strip().replace(" ", "")
    if TOTP_DIGITS.fullmatch(code):
        if _accept_totp(user, code):
            return "totp"
    elif _use_recovery_code(user, code):
        audit.record("user.recovery_code_used", actor=user, subject_type="user",
                     subject_id=user.id, details={"left": remaining_recovery_codes(user)})
        return "recovery"
    audit.record("user.two_factor_failed", actor=user, subject_type="user", subject_id=user.id,
                 details={"kind": "totp" if TOTP_DIGITS.fullmatch(code) else "recovery"})
    return None


def _accept_totp(user: User, code: str, now: Optional[datetime] = None) -> bool:
    code = (code or "").strip().replace(" ", "")
    if not TOTP_DIGITS.fullmatch(code):
        return False
    totp = pyotp.TOTP(_seed(user))
    current = totp.timecode(now or utcnow())
    step = next((s for s in (current - 1, current, current + 1)
                 if secrets.compare_digest(totp.generate_otp(s), code)), None)
    if step is None:
        return False
    accepted = db.session.execute(
        sa.update(User).where(User.id == user.id, sa.or_(User.totp_last_step.is_(None),
                                                         User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False)).rowcount
    if accepted:
        set_committed_value(user, "totp_last_step", step)
    return bool(accepted)


# Recovery codes -----------------------------------------------------------------------

def _hash(code: str) -> str:
    return hashlib.sha256(re.sub(r"[^A-Z2-7]", "", code.upper()).encode()).hexdigest()


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_hash(raw)))
    db.session.flush()
    return codes


def _use_recovery_code(user: User, code: str) -> bool:
    return bool(db.session.execute(
        sa.update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _hash(code),
               RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow()).execution_options(synchronize_session=False)).rowcount)


def remaining_recovery_codes(user: User) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))


def _step_up(user: User, password: str, code: str) -> None:
    """The password and a current code (or a recovery code), before a change."""
    accounts.check_password(user, password, field="password")
    if verify(user, code) is None:
        raise _wrong_code()


def replace_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """New recovery codes; the old ones stop working."""
    _step_up(user, password, code)
    codes = _new_recovery_codes(user)
    audit.record("user.recovery_codes_replaced", actor=user, subject_type="user",
                 subject_id=user.id)
    return codes


def disable(user: User, password: str, code: str) -> None:
    """Switch two-factor login off (sellers and buyers only)."""
    if required(user):
        raise Forbidden("Administrators must keep two-factor login on.",
                        code="two_factor_required")
    _step_up(user, password, code)
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record("user.two_factor_disabled", actor=user, subject_type="user", subject_id=user.id)
    db.session.flush()
