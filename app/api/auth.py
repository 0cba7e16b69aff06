"""Bearer API keys and the caller, shared by every API route module (it imports none of
them). The API never honours the session cookie, so it needs no CSRF."""
from typing import Optional

from flask import abort, g, request
from flask_smorest import Blueprint

from app.errors import Forbidden
from app.extensions import commit_keeping_loaded
from app.models import Role, User
from app.services.accounts import user_for_api_key


def require_api_key():
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    user = user_for_api_key(secret.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        abort(401, description="A valid API key is required: Authorization: Bearer <key>.")
    commit_keeping_loaded()  # records last_used_at even if the request fails later
    g.api_user = user


def api_blueprint(name: str, import_name: str, **options) -> Blueprint:
    """A flask-smorest blueprint whose every route requires an API key."""
    blueprint = Blueprint(name, import_name, **options)
    blueprint.before_request(require_api_key)
    return blueprint


def api_user(role: Optional[Role] = None, refusal: str = "") -> User:
    """The caller; with a role, refused (403, `refusal`) unless they have it."""
    user = g.api_user
    if role is not None and user.role is not role:
        raise Forbidden(refusal, code=f"not_a_{role.value}")
    return user
