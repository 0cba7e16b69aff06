"""Seller area, the blueprint: every route is for sellers only. Its routes live in routes.py (dashboard, batches), payouts.py and returns.py,
which import `bp` from here; create_app imports them, so nothing here imports them back."""
from flask import Blueprint

from app.auth.decorators import restrict_blueprint_to
from app.models import Role

bp = Blueprint("seller", __name__)
restrict_blueprint_to(bp, Role.SELLER)
