"""Bearer API keys and the caller, shared by every API route module (it imports none of
them). The API never honours the session cookie, so it needs no CSRF."""
from functools import wraps
from typing import Optional

from flask import abort, current_app, g, request
from flask_smorest import Blueprint

from app.errors import Forbidden
from app.extensions import commit_keeping_loaded, db, may_write
from app.models import ApiKey, Role, User
from app.people.membership import account_of
from app.services import key_cache
from app.services.accounts import api_key_for, kept_api_key, record_use, use_to_record
from app.services.audit import act_as


def require_api_key():
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else None
    key = None
    if secret is not None and getattr(current_app.view_functions.get(request.endpoint),
                                      "key_checked_with_sale", False):
        key = kept_api_key(secret, _usable_unchecked)
    if key is None:
        _authenticate(secret)
    else:
        _sign_in(key)


def _usable_unchecked(key: ApiKey) -> bool:
    """A kept key whose request writes nothing before its check: not an admin's (the
    two-factor refusal), its use recorded within the minute."""
    return not key.user.is_admin and not use_to_record(key)


def _authenticate(secret: Optional[str]) -> None:
    key = api_key_for(secret) if secret is not None else None
    if key is None:
        abort(401, description="A valid API key is required: Authorization: Bearer <key>.")
    user = key.user
    if user.is_admin and not user.two_factor_enabled:
        # As on the web, an admin can do nothing before enrolling (SPEC §2).
        raise Forbidden("Administrators must set up two-factor login (sign in on the web) "
                        "before their API keys work.", code="two_factor_required")
    # The lookup only read; the use is written in a transaction of its own that writes
    # first (a GET reads in a SQLite snapshot, which cannot become a write once another
    # process has written), and kept even if the request fails later. A read with no
    # use to record goes on in the lookup's snapshot.
    if use_to_record(key) or may_write():
        commit_keeping_loaded()
        if record_use(key):
            commit_keeping_loaded()
    _sign_in(key)


def _sign_in(key: ApiKey) -> None:
    """The request acts as the key's user (the audit log names them and the key)."""
    user = key.user
    act_as(user, key)
    g.api_member = user
    g.api_user = account_of(user)


def key_checked_with_sale(view):
    """A view whose work is a real-time sale (`POST /leads`) may take its API key from
    the process's kept copy without a statement (`require_api_key`): the sale's group
    transaction checks it before it stores the lead (app.market.realtime), the
    request's first statement, if it reaches the database before, checks it first,
    and an answer given without either checks it before it goes. A key that changed
    (revoked, its user deactivated, suspended...): nothing was stored; the request
    signs in again from the database (401 if the key is no longer good) and runs
    again, from its body."""

    @wraps(view)
    def checked(*args, **kwargs):
        try:
            answer = view(*args, **kwargs)
            key_cache.check_pending()
        except key_cache.KeyChanged:
            return _again(view, args, kwargs)
        except BaseException:
            try:
                key_cache.check_pending()  # an error answered from an unchecked key
            except key_cache.KeyChanged:
                return _again(view, args, kwargs)
            raise
        return answer

    checked.key_checked_with_sale = True
    return checked


def _again(view, args, kwargs):
    db.session.rollback()
    key_cache.take_pending()
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    _authenticate(secret.strip() if scheme.lower() == "bearer" else None)
    return view(*args, **kwargs)


def api_blueprint(name: str, import_name: str, **options) -> Blueprint:
    """A flask-smorest blueprint whose every route requires an API key."""
    blueprint = Blueprint(name, import_name, **options)
    blueprint.before_request(require_api_key)
    return blueprint


def api_member() -> User:
    """The key's owner: the person calling (their notifications are theirs alone)."""
    return g.api_member


def api_user(role: Optional[Role] = None, refusal: str = "") -> User:
    """The account the caller acts for (their company's, or their own: a key belongs
    to a member and acts for the member's company); with a role, refused (403,
    `refusal`) unless it has it."""
    user = g.api_user
    if role is not None and user.role is not role:
        raise Forbidden(refusal, code=f"not_a_{role.value}")
    return user
