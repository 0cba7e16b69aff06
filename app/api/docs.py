"""Interactive API docs at /api/docs, served from static/ (no CDN, CSP-clean)."""
from flask import Blueprint, render_template

bp = Blueprint("api_docs", __name__)


@bp.route("/api/docs")
def swagger_ui():
    return render_template("api/docs.html")
