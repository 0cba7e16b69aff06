"""Notifications for every role, the blueprint: the list, marking read and each
user's choices. Its routes live in routes.py, which imports `bp` from here;
create_app imports it, so nothing here imports it back."""
from flask import Blueprint

from app.auth.decorators import restrict_blueprint_to

bp = Blueprint("notifications", __name__)
restrict_blueprint_to(bp)  # signed-in users of any role
