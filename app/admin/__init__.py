"""Admin area, the blueprint: every route is for admins only. Its routes live in routes.py (overview, users, credits, audit log), payments.py, funding.py,
quality.py and returns.py,
which import `bp` from here; create_app imports them, so nothing here imports them back."""
from flask import Blueprint

from app.auth.decorators import restrict_blueprint_to
from app.models import Role

bp = Blueprint("admin", __name__)
restrict_blueprint_to(bp, Role.ADMIN)
