"""A buyer's delivery settings per order (SPEC §12), on their own page and editable at
any time, also after the order closed: where leads go, in which format, a test lead
with the exact request and reply, and the delivery log with resend."""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for

from app.aftersale.delivery import emailing, engine, http, settings
from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.buyer import bp
from app.buyer.forms import DeliveryFormatForm, EmailDeliveryForm, WebhookForm
from app.errors import DomainError
from app.extensions import db
from app.market import operations, queries
from app.models import DeliveryAttempt, Order, WebhookDelivery
from app.services.crypto import current_vault

ATTEMPTS_SHOWN = 20
DELIVERIES_PAGE = 10


def _format_form(order: Order) -> DeliveryFormatForm:
    method = settings.method_for(order)
    if method is None:
        data = {"method": "webhook"}
    else:
        data = {"method": "http", "body_format": method.body_format, "mapping": method.mapping,
                "headers": settings.headers_text(method), "reply_kind": method.reply_kind,
                "reply_path": method.reply_path, "reply_accept": method.reply_accept,
                "reply_reason": method.reply_reason}
    preset = http.PRESETS.get(request.args.get("preset", ""))
    if preset:  # filled in, not saved until the buyer saves
        data = {"method": "http", **{k: v for k, v in preset.items() if k != "label"}}
    return DeliveryFormatForm(data=data)


def _email_form(order: Order) -> EmailDeliveryForm:
    method = settings.email_for(order)
    # formdata=None: on the test's POST the form shows what is saved, not that request's
    data = {"enabled": False} if method is None else {
        "enabled": True, "addresses": method.addresses, "mode": method.mode,
        "digest": method.digest}
    return EmailDeliveryForm(formdata=None, data=data)


def _attempts(order: Order) -> list[dict]:
    vault = current_vault()
    rows = db.session.execute(
        sa.select(DeliveryAttempt, WebhookDelivery.sale_id)
        .join(WebhookDelivery, WebhookDelivery.id == DeliveryAttempt.delivery_id)
        .where(WebhookDelivery.order_id == order.id)
        .order_by(DeliveryAttempt.id.desc()).limit(ATTEMPTS_SHOWN)).all()
    return [{"attempt": a, "sale_id": sale_id, "request": vault.decrypt(a.request_enc),
             "reply": vault.decrypt(a.reply_enc)} for a, sale_id in rows]


def deliveries_context(order: Order, page: int) -> dict:
    """The order's deliveries, newest first, a page at a time (buyer/_deliveries.html),
    on the order page and this one."""
    found = engine.log_for(order, limit=DELIVERIES_PAGE + 1,
                           offset=(page - 1) * DELIVERIES_PAGE)
    return {"deliveries": found[:DELIVERIES_PAGE], "deliveries_page": page,
            "deliveries_more": len(found) > DELIVERIES_PAGE,
            "resend_href": url_for("buyer.resend", order_id=order.id, delivery_id=1)
            .replace("/1/", "/{id}/")}


def _page(order: Order, format_form=None, test=None, email_form=None, email_test=None):
    return render_template(
        "buyer/delivery.html", order=order, confirm=ConfirmForm(),
        webhook_form=WebhookForm(data={"webhook_url": order.webhook_url}),
        format_form=format_form or _format_form(order), presets=http.PRESETS,
        email_form=email_form or _email_form(order), email_test=email_test,
        has_email=settings.email_for(order) is not None,
        attempts=_attempts(order), test=test, never_sent=engine.never_sent_count(order),
        **deliveries_context(order, 1))


@bp.route("/orders/<int:order_id>/delivery")
def order_delivery(order_id: int):
    return _page(queries.order_for(current_account, order_id))


def _back(order_id: int):
    return redirect(url_for("buyer.order_delivery", order_id=order_id))


@bp.route("/orders/<int:order_id>/webhook", methods=["POST"])
def set_webhook(order_id: int):
    form = WebhookForm()
    if form.validate_on_submit():
        order = queries.order_for(current_account, order_id, lock=True)
        try:
            secret = operations.set_webhook(order, (form.webhook_url.data or "").strip() or None)
            db.session.commit()
            flash(f"Delivery URL saved. Webhook secret (shown only now): {secret}" if secret
                  else "Delivery URL removed: leads are no longer sent.",
                  "warning" if secret else "info")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    return _back(order_id)


@bp.route("/orders/<int:order_id>/delivery/never-sent", methods=["POST"])
def send_never_sent(order_id: int):
    """The leads sold before the order had a delivery URL, sent there now."""
    form = ConfirmForm()
    if form.validate_on_submit():
        order = queries.order_for(current_account, order_id, lock=True)
        try:
            sent = engine.send_never_sent(order)
            db.session.commit()
            flash(f"{sent} lead(s) sold earlier are on their way; see the deliveries below.",
                  "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    return _back(order_id)


@bp.route("/orders/<int:order_id>/delivery/format", methods=["POST"])
def save_delivery_format(order_id: int):
    order = queries.order_for(current_account, order_id, lock=True)
    form = DeliveryFormatForm()
    if not form.validate_on_submit():
        return _page(order, format_form=form), 422
    try:
        if form.method.data == "http":
            settings.use_http(order, body_format=form.body_format.data,
                              mapping=form.mapping.data or "", headers=form.headers.data or "",
                              rule=http.ReplyRule(form.reply_kind.data, form.reply_path.data or "",
                                                  form.reply_accept.data or "",
                                                  form.reply_reason.data or ""))
        else:
            settings.use_webhook(order)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        order = queries.order_for(current_account, order_id)
        return _page(order, format_form=form), 422
    flash("Delivery format saved. Send a test lead to see what your system answers.", "success")
    return _back(order_id)


@bp.route("/orders/<int:order_id>/delivery/test", methods=["POST"])
def test_delivery(order_id: int):
    order = queries.order_for(current_account, order_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; please try again.", "danger")
        return _back(order_id)
    outcome = engine.send_test(order)
    return _page(queries.order_for(current_account, order_id), test=outcome)


@bp.route("/orders/<int:order_id>/deliveries/<bigid:delivery_id>/resend", methods=["POST"])
def resend(order_id: int, delivery_id: int):
    order = queries.order_for(current_account, order_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; please try again.", "danger")
        return _back(order_id)
    try:
        engine.resend(order, delivery_id)
        db.session.commit()
        flash("Sent again with the current settings; the log below shows the answer.",
              "success")
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    return _back(order_id)


@bp.route("/orders/<int:order_id>/delivery/email", methods=["POST"])
def save_email_delivery(order_id: int):
    order = queries.order_for(current_account, order_id, lock=True)
    form = EmailDeliveryForm()
    if not form.validate_on_submit():
        return _page(order, email_form=form), 422
    try:
        if form.enabled.data:
            settings.use_email(order, addresses=form.addresses.data or "",
                               mode=form.mode.data, digest=form.digest.data)
        else:
            settings.stop_email(order)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        form.addresses.errors = [exc.message]
        return _page(queries.order_for(current_account, order_id), email_form=form), 422
    flash("Email delivery saved. Send a test email to see it arrive." if form.enabled.data
          else "Leads are no longer sent by email.", "success")
    return _back(order_id)


@bp.route("/orders/<int:order_id>/delivery/email/test", methods=["POST"])
def test_email_delivery(order_id: int):
    order = queries.order_for(current_account, order_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; please try again.", "danger")
        return _back(order_id)
    outcome = emailing.send_test(order)
    return _page(queries.order_for(current_account, order_id), email_test=outcome)
