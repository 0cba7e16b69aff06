"""Accounts: sign-up, authentication, passwords, roles, trust levels and API keys."""
import hashlib
import secrets
from datetime import timedelta
from functools import lru_cache
from typing import Callable, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from app.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import ApiKey, Role, TrustLevel, User
from app.models.types import utcnow
from app.models.users import new_session_nonce
from app.services import audit, key_cache

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
# zxcvbn's 0-4: 3 resists an offline attack on a slow hash (argon2id here)
MIN_PASSWORD_SCORE = 3
API_KEY_PREFIX = "lx_"
PUBLIC_ROLES = (Role.SELLER, Role.BUYER)
NAME_REQUIRED = "Give your name or your company's name: it is how others on LeadX know you."

def _hasher() -> PasswordHasher:
    """argon2id, memory-hard (SPEC §2); tests choose a cheaper profile via config."""
    return _hasher_for(current_app.config["ARGON2_PROFILE"])


@lru_cache(maxsize=4)
def _hasher_for(profile_name: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(profiles, profile_name))


@lru_cache(maxsize=4)
def _dummy_hash(profile_name: str) -> str:
    """Checked when the email is unknown, so timing does not reveal who has an account."""
    return _hasher_for(profile_name).hash(secrets.token_hex(16))


def normalise_email(email: str) -> str:
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(str(exc), code="invalid_email", details={"field": "email"})
    return result.normalized.lower()


def _own_words(email: str, name: str) -> list[str]:
    """What a guesser knows of the person, as the words zxcvbn matches: the whole
    address, its local part and domain labels (a password made of its parts matches
    none of the whole) and the name's words."""
    local, _, domain = email.partition("@")
    return [word for word in (email, local, *domain.split("."), *name.split()) if word]


def check_password_strength(password: str, email: str = "", name: str = "") -> None:
    """Refuse a password of the wrong length or one easy to guess (zxcvbn: common
    words, repeats, sequences, keyboard patterns, the words of the person's own address
    and name), saying why. zxcvbn rates at most 72 characters: a longer one is rated by
    its start."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"The password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.",
            code="weak_password",
            details={"field": "password"},
        )
    # Imported here: its word lists take 13 MB, which every process importing this
    # module (the ingest pipeline's among them) would hold without ever rating one.
    from zxcvbn import zxcvbn

    rating = zxcvbn(password[:72], user_inputs=_own_words(email, name))
    if rating["score"] < MIN_PASSWORD_SCORE:
        feedback = rating["feedback"]
        why = " ".join([feedback["warning"], *feedback["suggestions"]]).strip()
        raise ValidationFailed(
            "This password is too easy to guess. " + (why or "Add another word or two.")
            + " A few unrelated words make a strong one.",
            code="weak_password",
            details={"field": "password"},
        )


def names_of(user_ids) -> dict[int, str]:
    """Each user's name as pages show it (their display name, or else their email),
    in one query, for lists that hold user ids."""
    ids = sorted({i for i in user_ids if i is not None})
    if not ids:
        return {}
    return {user_id: name or email for user_id, name, email in db.session.execute(
        select(User.id, User.display_name, User.email).where(User.id.in_(ids)))}


def find_user_by_email(email: str) -> Optional[User]:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def check_timezone(name: str) -> str:
    """An IANA zone name (refused, naming the field, if no such zone exists)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"Unknown time zone {name!r}; use a name like Europe/Madrid.",
                               code="invalid_timezone", details={"field": "timezone"}) from None
    return name


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The zones a person would pick from (Europe/Madrid…), without the legacy aliases
    (US/Eastern, Etc/GMT+5…) that `check_timezone` still accepts."""
    legacy = ("Etc/", "SystemV/", "US/", "posix/", "right/")
    return ("UTC",) + tuple(sorted(z for z in available_timezones()
                                   if "/" in z and not z.startswith(legacy)))


def browser_timezone(name: Optional[str]) -> str:
    """The zone a sign-up page read from the browser, or UTC when it sent none or an
    unknown one: a wrong guess must never stop someone from signing up."""
    try:
        return check_timezone((name or "UTC").strip())
    except ValidationFailed:
        return "UTC"


def create_user(
    email: str, password: str, role: Role | str, *, display_name: str = "",
    email_verified: bool = True, timezone: str = "UTC",
) -> User:
    """Create a user of any role; public sign-up restricts roles before calling this.
    The address counts as verified unless the caller says otherwise: users made by an
    admin (CLI) and the demo have a known address; public sign-up passes False."""
    role = Role(role)
    email = normalise_email(email)
    check_password_strength(password, email, display_name)
    if find_user_by_email(email):
        raise Conflict("An account with this email already exists.", code="email_taken")
    user = User(
        email=email,
        password_hash=_hasher().hash(password),
        role=role,
        display_name=display_name.strip() or email.split("@")[0],
        trust_level=TrustLevel.NEW,
        email_verified_at=utcnow() if email_verified else None,
        timezone=check_timezone(timezone),
    )
    db.session.add(user)
    db.session.flush()
    return user


def sign_up(email: str, password: str, role: Role | str, display_name: str = "",
            timezone: str = "UTC") -> User:
    role = Role(role)
    if role not in PUBLIC_ROLES:
        raise ValidationFailed("Only sellers and buyers can sign up.", code="role_not_allowed")
    if not display_name.strip():
        # Others read it: sellers on the buyers they sell to, team members, admins.
        raise ValidationFailed(NAME_REQUIRED, code="name_required",
                               details={"field": "display_name"})
    return create_user(email, password, role, display_name=display_name, email_verified=False,
                       timezone=timezone)


def may_be_named(user: User) -> bool:
    """A buyer account (not a member of one) may let sellers name it on forms (§14)."""
    return user.role == Role.BUYER and user.account_holder_id is None


def update_profile(user: User, display_name: str, timezone: str,
                   named_on_forms: Optional[bool] = None) -> None:
    """A user's own name and time zone (the default zone of the orders they place), and
    for a buyer account whether sellers may name it on their forms (`None`: unchanged).
    Operation: flushes; audited when something changed."""
    display_name = display_name.strip() or user.email.split("@")[0]
    timezone = check_timezone(timezone.strip())
    wanted = [("display_name", display_name), ("timezone", timezone)]
    if named_on_forms is not None and may_be_named(user):
        wanted.append(("named_on_forms", named_on_forms))
    changed = {field: value for field, value in wanted if getattr(user, field) != value}
    if not changed:
        return
    for field, value in changed.items():
        setattr(user, field, value)
    audit.record("account.profile_changed", actor=user, subject_type="user", subject_id=user.id,
                 details=changed)
    db.session.flush()


def require_verified_email(user: User) -> None:
    """Placing orders, uploading leads and withdrawing money wait for a verified address
    (SPEC §2): the operations call this, so the web pages and the API refuse alike."""
    if not user.email_verified:
        raise Forbidden(
            "Confirm your email address first: follow the link we emailed you when you "
            "signed up (you can have it sent again from the banner at the top of the site).",
            code="email_not_verified")


def authenticate(email: str, password: str) -> Optional[User]:
    """The user for these credentials, or None. Rehashes if the parameters changed."""
    user = find_user_by_email(email)
    hasher = _hasher()
    try:
        hasher.verify(
            user.password_hash if user else _dummy_hash(current_app.config["ARGON2_PROFILE"]),
            password,
        )
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def check_password(user: User, password: str, field: str = "current") -> None:
    """Refuse (wrong_password) unless this is the user's password: a step up before
    changing how they sign in."""
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise ValidationFailed(
            "The current password is wrong.", code="wrong_password", details={"field": field}
        )


def change_password(user: User, current_password: str, new_password: str) -> None:
    check_password(user, current_password)
    if new_password == current_password:
        raise ValidationFailed("The new password must differ from the current one.",
                               code="same_password", details={"field": "password"})
    set_password(user, new_password)


def set_password(user: User, new_password: str) -> None:
    """Store a new password and sign out every session of the user (their login id
    carries the nonce, so sessions and remember-me cookies made before are void)."""
    check_password_strength(new_password, user.email, user.display_name)
    user.password_hash = _hasher().hash(new_password)
    user.session_nonce = new_session_nonce()
    db.session.flush()


def load_user_from_session_id(session_id: str, load=None) -> Optional[User]:
    """The session's user if the session is still theirs; `load(user_id)` reads the
    user (by default by primary key), for a caller that reads more in the same query."""
    user_id, _, nonce = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = (load or (lambda uid: db.session.get(User, uid)))(int(user_id))
    if user is None or not user.is_active or not secrets.compare_digest(user.session_nonce, nonce):
        return None
    return user


def _hash_api_key(secret: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough to store them.
    return hashlib.sha256(secret.encode()).hexdigest()


# "Last used" is shown to the minute: a write per key per minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_api_key(user: User, name: str = "default") -> tuple[ApiKey, str]:
    """A new key and its secret; the secret exists only in this return value."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        user_id=user.id,
        name=(name or "default").strip()[:80],
        prefix=secret[:10],
        key_hash=_hash_api_key(secret),
    )
    db.session.add(key)
    db.session.flush()
    audit.record("api_key.created", actor=user, subject_type="api_key", subject_id=key.id,
                 details={"name": key.name, "prefix": key.prefix})
    return key, secret


def api_key_for(secret: str) -> Optional[ApiKey]:
    """The live key with this secret, of an active user (reads only)."""
    if not secret.startswith(API_KEY_PREFIX):
        return None
    key_hash = _hash_api_key(secret)
    # The key's user comes in the same statement: every API request needs both.
    key = key_cache.key_with_user(key_hash, lambda: db.session.scalar(
        select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.key_hash == key_hash)))
    if key is None or key.is_revoked or not key.user.is_active:
        return None
    return key


def kept_api_key(secret: str, usable: Callable[[ApiKey], bool]) -> Optional[ApiKey]:
    """The process's kept copy of the live key with this secret if `usable(copy)`,
    unchecked (no SQL: key_cache.unchecked, whose check the request then owes), or
    None. Only a key whose user is its own account: a company's account is another row,
    which the key's revision does not cover."""
    if not secret.startswith(API_KEY_PREFIX):
        return None
    return key_cache.unchecked(_hash_api_key(secret), lambda key: (
        key.user.account_holder_id is None and not key.is_revoked
        and key.user.is_active_account and usable(key)))


def use_to_record(key: ApiKey) -> bool:
    """Whether record_use would write: the key's last use is a minute old or more."""
    return key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_RESOLUTION


def record_use(key: ApiKey) -> bool:
    """Note the key's use, to the minute (not a write per request); True if written.
    One UPDATE, so that it can be a transaction's first statement: on SQLite a write
    from a transaction that read first fails at once if anyone wrote since it began."""
    if not use_to_record(key):
        return False
    now = utcnow()
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
                       .execution_options(synchronize_session=False))
    set_committed_value(key, "last_used_at", now)
    key_cache.noted_use(key.key_hash, now)
    return True


def revoke_api_key(user: User, key_id: int) -> None:
    key = db.session.get(ApiKey, key_id)
    if key is None or key.user_id != user.id:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record("api_key.revoked", actor=user, subject_type="api_key", subject_id=key.id,
                     details={"name": key.name, "prefix": key.prefix})
    db.session.flush()


def set_trust_level(
    seller: User, level: TrustLevel | str, *, reason: str, actor: Optional[User]
) -> None:
    """An admin's trust decision for a seller (SPEC §2), always with a reason, audited."""
    level = TrustLevel(level)
    if not seller.is_seller:
        raise ValidationFailed("Trust levels apply to sellers only.", code="not_a_seller")
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    previous = seller.trust_level
    if previous is level:
        raise ValidationFailed(f"The seller is already {level.value}.", code="no_change")
    seller.trust_level = level
    details = {"from": previous.value, "to": level.value, "reason": reason.strip()}
    if level is TrustLevel.SUSPENDED:  # SPEC §2: no uploads, unsold inventory delisted
        from app.services import trust

        details["leads_delisted"] = trust.delist_unsold(seller)
    audit.record(
        "seller.trust_changed",
        actor=actor,
        subject_type="user",
        subject_id=seller.id,
        details=details,
    )


def user_by_email(email: str) -> User:
    user = find_user_by_email(email)
    if user is None:
        raise NotFound(f"No user with the email {email}.")
    return user
