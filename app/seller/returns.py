"""A seller answers the returns of their leads: accept (the sale is reversed) or
contest (an admin decides); and their leads' journeys (app/aftersale/web.py)."""
from flask import flash, redirect, render_template, request, url_for

from app.aftersale import web
from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.errors import DomainError, NotFound
from app.extensions import db
from app.seller import bp
from app.services import returns

web.add_routes(bp)


@bp.route("/returns")
def return_list():
    return render_template("seller/returns.html", cases=returns.seller_cases(current_account),
                           form=ConfirmForm())


@bp.route("/returns/<int:return_id>/<any(accept, contest):answer>", methods=["POST"])
def answer_return(return_id: int, answer: str):
    if ConfirmForm().validate_on_submit():
        try:
            returns.seller_respond(current_account, return_id, answer == "accept",
                                   request.form.get("note", ""))
            db.session.commit()
        except NotFound:
            raise  # not a return of the caller's company's leads
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash("Return accepted: the sale is reversed." if answer == "accept" else
                  "Return contested: an administrator will decide.", "success")
    return redirect(url_for("seller.return_list"))
