"""Buyer area: dashboard with balance and statement."""
from flask import Blueprint, render_template
from flask_login import current_user

from app.auth.decorators import restrict_blueprint_to
from app.models import Role
from app.services import ledger

bp = Blueprint("buyer", __name__)
restrict_blueprint_to(bp, Role.BUYER)


@bp.route("/")
def dashboard():
    return render_template(
        "buyer/dashboard.html",
        balance=ledger.balance_for(current_user),
        statement=ledger.statement_for(current_user, limit=50),
    )
