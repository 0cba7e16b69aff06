"""Admins' view of opt-outs (SPEC §14): buyers who have not acknowledged a person's
opt-out by its deadline (10 business days, app.people.opt_out)."""
from flask import render_template

from app.admin import bp
from app.people import opt_out


@bp.route("/opt-outs")
def overdue_opt_outs():
    return render_template("admin/opt_outs.html", overdue=opt_out.overdue())
