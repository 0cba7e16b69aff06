"""Role checks, applied to whole blueprints so no route can forget them."""
from flask import Blueprint, abort
from flask_login import current_user

from app.extensions import commit_keeping_loaded, login_manager, may_write
from app.models import Role


def restrict_blueprint_to(bp: Blueprint, *roles: Role) -> None:
    """Anonymous users go to the login page; users of another role get 403."""

    @bp.before_request
    def check_role():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if roles and current_user.role not in roles:
            abort(403)
        if may_write():
            commit_keeping_loaded()  # the views start with no transaction (and no lock) open
        # A read goes on in the snapshot the check read in: no COMMIT and BEGIN between.
