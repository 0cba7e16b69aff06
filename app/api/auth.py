"""Bearer API keys and the caller, shared by every API route module (it imports none of
them). The API never honours the session cookie, so it needs no CSRF."""
from typing import Optional

from flask import abort, g, request
from flask_smorest import Blueprint

from app.errors import Forbidden
from app.extensions import commit_keeping_loaded, may_write
from app.models import Role, User
from app.people.membership import account_of
from app.services.accounts import api_key_for, record_use, use_to_record
from app.services.audit import act_as


def require_api_key():
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    key = api_key_for(secret.strip()) if scheme.lower() == "bearer" else None
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
    act_as(user)
    g.api_member = user
    g.api_user = account_of(user)


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
