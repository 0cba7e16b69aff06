"""Buyer area, the blueprint: every route is for buyers only. Its routes live in routes.py (orders, leads, webhooks, KPIs), balance.py,
delivery.py (delivery settings, test lead, delivery log) and returns.py,
which import `bp` from here; create_app imports them, so nothing here imports them back."""
from flask import Blueprint

from app.auth.decorators import restrict_blueprint_to
from app.models import Role

bp = Blueprint("buyer", __name__)
restrict_blueprint_to(bp, Role.BUYER)
