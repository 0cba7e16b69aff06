"""Notification pages for every role: the list (newest first, 50 a page), marking
one or all read, and the settings (each kind in the app and by email; a buyer's
low-balance threshold)."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.errors import DomainError
from app.extensions import db
from app.notifications import bp
from app.notifications.forms import rows, settings_form
from app.people import notification_queries as queries
from app.people import notifications

PAGE = 50


@bp.route("/")
def index():
    page = max(request.args.get("page", 1, type=int), 1)
    items = queries.notifications_for(current_user, limit=PAGE + 1, offset=(page - 1) * PAGE)
    return render_template("notifications/index.html", notifications=items[:PAGE], page=page,
                           has_next=len(items) > PAGE, form=ConfirmForm())


@bp.route("/<bigid:notification_id>/open", methods=["POST"])
def open_one(notification_id: int):
    """Mark it read and go where it points."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    notification = notifications.mark_read(current_user, notification_id)
    if notification is None:
        abort(404)
    db.session.commit()
    return redirect(notification.link or url_for("notifications.index"))


@bp.route("/<bigid:notification_id>/read", methods=["POST"])
def read_one(notification_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if notifications.mark_read(current_user, notification_id) is None:
        abort(404)
    db.session.commit()
    return redirect(url_for("notifications.index"))


@bp.route("/read-all", methods=["POST"])
def read_all():
    if ConfirmForm().validate_on_submit():
        count = notifications.mark_all_read(current_user)
        db.session.commit()
        flash(f"{count} notification{'s' if count != 1 else ''} marked read.", "success")
    return redirect(url_for("notifications.index"))


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    user, role = current_user, current_user.role
    if request.method == "GET":
        data = {f"{kind.value}_{way}": on for kind, (in_app, email)
                in queries.choices_for(user).items()
                for way, on in (("in_app", in_app), ("email", email))}
        # The threshold is the account's: a company's people share one balance.
        if user.is_buyer and current_account.low_balance_threshold is not None:
            data["threshold"] = current_account.low_balance_threshold
        form = settings_form(role, data=data)
    else:
        form = settings_form(role)
        if form.validate_on_submit():
            choices = {kind: (form[f"{kind.value}_in_app"].data, form[f"{kind.value}_email"].data)
                       for kind in notifications.kinds_for(role)}
            try:
                notifications.choose(user, choices)
                if user.is_buyer:
                    notifications.set_low_balance_threshold(current_account, form.threshold.minor_units)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                flash(exc.message, "danger")
            else:
                flash("Your notification settings are saved.", "success")
                return redirect(url_for("notifications.settings"))
    return render_template("notifications/settings.html", form=form, rows=rows(form, role))
