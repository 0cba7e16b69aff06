"""Public routes: the landing page, the role-based home redirect and the health check."""
from flask import jsonify, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import text

from app.extensions import db
from app.main import bp

HOME_BY_ROLE = {"seller": "seller.dashboard", "buyer": "buyer.dashboard", "admin": "admin.dashboard"}


@bp.route("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for(HOME_BY_ROLE[current_user.role.value]))
    return render_template("main/index.html")


@bp.route("/healthz")
def healthz():
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")
