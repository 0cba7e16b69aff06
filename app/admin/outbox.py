"""The development outbox: with no MAIL_SERVER, emails are kept instead of sent and
an admin reads them here (the list, and one message as text and as HTML). Where
mail is sent these pages do not exist: the messages are their recipients' alone.
Reading a message that carries leads' contacts is audited (app.core.mail.read_in_outbox)."""
from flask import abort, make_response, render_template, request
from flask_login import current_user

from app.admin import bp
from app.core import mail
from app.extensions import commit_keeping_loaded
from app.people import notification_queries as queries

PAGE = 50
# The HTML body is shown in a frame of its own: mail's inline styles, nothing else.
EMAIL_BODY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                     "frame-ancestors 'self'; sandbox")


@bp.before_request
def outbox_only_without_smtp():
    if request.endpoint and request.endpoint.startswith("admin.outbox") \
            and not mail.outbox_enabled():
        abort(404)


@bp.route("/outbox")
def outbox():
    page = max(request.args.get("page", 1, type=int), 1)
    emails = queries.outbox(limit=PAGE + 1, offset=(page - 1) * PAGE)
    return render_template("admin/outbox.html", emails=emails[:PAGE], page=page,
                           has_next=len(emails) > PAGE)


@bp.route("/outbox/<bigid:email_id>")
def outbox_message(email_id: int):
    email = queries.outgoing_email(email_id) or abort(404)
    text_body = mail.read_in_outbox(email, "text", current_user, ip=request.remote_addr)
    commit_keeping_loaded()  # the audited view is recorded even if rendering fails
    return render_template("admin/outbox_message.html", email=email, text_body=text_body)


@bp.route("/outbox/<bigid:email_id>/body.html")
def outbox_message_html(email_id: int):
    email = queries.outgoing_email(email_id) or abort(404)
    response = make_response(mail.read_in_outbox(email, "html", current_user,
                                                 ip=request.remote_addr))
    commit_keeping_loaded()
    response.headers["Content-Security-Policy"] = EMAIL_BODY_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
