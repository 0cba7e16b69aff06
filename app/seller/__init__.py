"""Seller area: dashboard (batches and payouts arrive with their issues)."""
from flask import Blueprint, render_template
from flask_login import current_user

from app.auth.decorators import restrict_blueprint_to
from app.models import Role
from app.services import ledger

bp = Blueprint("seller", __name__)
restrict_blueprint_to(bp, Role.SELLER)


@bp.route("/")
def dashboard():
    return render_template(
        "seller/dashboard.html",
        balance=ledger.balance_for(current_user),
        statement=ledger.statement_for(current_user, limit=20),
    )
