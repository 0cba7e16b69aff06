"""Outgoing email, operations (flush; callers commit): `queue` renders a message's
HTML and text bodies from templates (templates/email/) and stores it in the same
transaction as the change that caused it. Once that commits, EmailsQueued starts
`app.core.mail_jobs.send` for it; a rollback takes the message back with the change.

Without MAIL_SERVER (development) nothing is sent: the message is kept
(EmailStatus.KEPT) in the outbox an admin reads in the browser (/admin/outbox).

Stored bodies are encrypted (`bodies` opens them): a lead delivered by email carries
the person's contacts (app.aftersale.delivery.emailing), and a notice may quote what
people wrote about them (app.people.notifications). Such a message names the leads
whose people it carries (OutgoingEmailLead): an erasure clears it
(app.services.privacy), and an admin's reading of it in the outbox is audited
(`read_in_outbox`)."""
from collections.abc import Iterable
from contextlib import nullcontext
from email.utils import make_msgid, parseaddr

import sqlalchemy as sa
from flask import current_app, render_template

from app.core import events
from app.extensions import db
from app.formatting import reading_as
from app.models import EmailStatus, OutgoingEmail, OutgoingEmailLead, User
from app.services import audit
from app.services.crypto import current_vault


def queue(to: str, subject: str, template: str, *, user_id: int | None = None,
          kind: str = "", lead_ids: Iterable[int] = (), **context) -> OutgoingEmail:
    """Store the email `template` (.txt and .html) rendered with `context`, to send
    once the caller commits; written for `user_id`'s locale and time zone if given.
    `lead_ids`: the leads whose people it may name (see `store`)."""
    kept = not current_app.config["MAIL_SERVER"]
    reader = db.session.get(User, user_id) if user_id is not None else None
    text, html = render(template, subject, reader=reader, **context)
    email = store(to, subject, text, html, kind=kind, user_id=user_id, lead_ids=lead_ids,
                  status=EmailStatus.KEPT if kept else EmailStatus.PENDING)
    if not kept:
        events.record(events.EmailsQueued((email.id,)))
    return email


def render(template: str, subject: str, *, reader: User | None = None,
           **context) -> tuple[str, str]:
    """The text and HTML bodies of the email `template`, its amounts and dates written
    for `reader` (their locale and time zone) when given."""
    context.update(subject=subject, site_url=public_url(""))
    with reading_as(reader) if reader is not None else nullcontext():
        return (render_template(f"email/{template}.txt", **context),
                render_template(f"email/{template}.html", **context))


def store(to: str, subject: str, text: str, html: str, *, status: EmailStatus,
          kind: str = "", user_id: int | None = None,
          message_id: str | None = None, lead_ids: Iterable[int] = ()) -> OutgoingEmail:
    """A message in the outbox, its bodies encrypted; `lead_ids`: the leads whose
    contacts it carries, or whose people its words may name."""
    vault = current_vault()
    email = OutgoingEmail(
        to=to, subject=subject[:255], kind=kind, user_id=user_id,
        text_body_enc=vault.encrypt(text), html_body_enc=vault.encrypt(html),
        message_id=message_id or new_message_id(), status=status)
    db.session.add(email)
    db.session.flush()
    db.session.add_all(OutgoingEmailLead(email_id=email.id, lead_id=lead_id)
                       for lead_id in set(lead_ids))
    return email


def bodies(email: OutgoingEmail) -> tuple[str, str]:
    """(text, html) of a stored message."""
    vault = current_vault()
    return vault.decrypt(email.text_body_enc), vault.decrypt(email.html_body_enc)


def read_in_outbox(email: OutgoingEmail, part: str, admin: User,
                   ip: str | None = None) -> str:
    """The message's "text" or "html" body as an admin reads it in the outbox; reading
    one that carries leads' people is an audited view (SPEC §7), one per part."""
    lead_ids = sorted(db.session.scalars(sa.select(OutgoingEmailLead.lead_id)
                                         .where(OutgoingEmailLead.email_id == email.id)))
    if lead_ids:
        audit.record("outbox.contacts_viewed", actor=admin, subject_type="outgoing_email",
                     subject_id=email.id, ip=ip, details={"part": part, "lead_ids": lead_ids})
    return bodies(email)[0 if part == "text" else 1]


def new_message_id() -> str:
    return make_msgid(domain=_sender_domain())


def public_url(path: str) -> str:
    """An absolute link for an email: jobs have no request to take the host from."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + path


def outbox_enabled() -> bool:
    """The outbox page exists only where mail is kept instead of sent: where mail is
    sent, its bodies (future sign-in links among them) are for their recipients only."""
    return not current_app.config["MAIL_SERVER"]


def _sender_domain() -> str:
    address = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1]
    return address.rpartition("@")[2] or "localhost"
