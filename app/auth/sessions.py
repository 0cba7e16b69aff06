"""Signing in, pure helpers shared by the account routes (no routes here): a safe
`next` target, a fresh session, the second step of a login waiting for its code, and
the rate-limit keys of signed-in users, and the account the signed-in user acts for."""
import time
from typing import Optional
from urllib.parse import urlsplit

from flask import request, session
from flask_login import current_user, login_user
from werkzeug.local import LocalProxy

from app.models import User
from app.people.membership import account_of
from app.services import accounts

# Whose balance, orders, batches and sales the pages show and change: the company's
# account for a member, the user's own otherwise. Who acted (API keys, notifications,
# settings, the audit log) stays current_user.
current_account: User = LocalProxy(lambda: account_of(current_user._get_current_object()))

PENDING_LOGIN = "two_factor_pending"
PENDING_SECONDS = 300  # the second step follows the password within five minutes


def safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def start_session(user: User, remember: bool) -> None:
    # A fresh session: nothing planted before login survives into the user's session.
    session.clear()
    login_user(user, remember=remember)


def await_second_step(user: User, remember: bool, next_url: Optional[str]) -> None:
    """The password was right and the user has two-factor login: not signed in yet,
    the session only remembers who passed the password, and when."""
    session.clear()
    session[PENDING_LOGIN] = {"id": user.get_id(), "at": int(time.time()),
                              "remember": remember, "next": next_url}


def pending_login() -> Optional[dict]:
    pending = session.get(PENDING_LOGIN)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    return pending


def pending_user() -> Optional[User]:
    """Who passed the password of the login in progress, or None (none, too old, or
    their password was reset since: the id carries the session nonce)."""
    pending = pending_login()
    return accounts.load_user_from_session_id(str(pending.get("id", ""))) if pending else None


def pending_rate_key() -> str:
    pending = session.get(PENDING_LOGIN)
    return f"2fa|{pending.get('id') if isinstance(pending, dict) else request.remote_addr}"


def user_rate_key() -> str:
    return f"user:{current_user.get_id()}" if current_user.is_authenticated else request.remote_addr
