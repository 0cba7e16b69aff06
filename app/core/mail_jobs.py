"""Outgoing email, jobs (own their commits): send a stored message over SMTP
(Flask-Mailman), retried with backoff until the server takes it.

A send first claims its message by moving the next attempt a lease ahead in a
committed conditional UPDATE: the after-commit dispatch and the periodic retry never
send one message at once, and a worker that dies mid-send leaves it to the retry
once the lease is over. No transaction is open during the SMTP conversation. The
Message-ID is fixed when the message is queued, so the rare second send after an
answer lost on its way back is one message to the reader's mail client. A message
that carried a person who is erased before it goes is never sent
(app.services.privacy fails it and clears its bodies).

`transmit` sends a message at once and returns the server's reply, for callers that
keep their own log and retries (deliveries by email, app.aftersale.delivery.emailing)."""
import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_mailman import EmailMessage, EmailMultiAlternatives
from flask_mailman.message import sanitize_address

from app.core.mail import bodies
from app.extensions import db, mail
from app.models import EmailStatus, OutgoingEmail
from app.models.types import utcnow

log = logging.getLogger(__name__)

# Delay before attempt n+1 after n failures: a minute to half a day, two days in all.
RETRY_DELAYS = [timedelta(seconds=s) for s in
                (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)]
LEASE = timedelta(minutes=5)  # longer than any SMTP conversation (MAIL_TIMEOUT)


def send(email_id: int) -> bool:
    """One attempt at one message; True when the SMTP server took it."""
    now = utcnow()
    claimed = db.session.execute(
        sa.update(OutgoingEmail)
        .where(OutgoingEmail.id == email_id, OutgoingEmail.status == EmailStatus.PENDING,
               OutgoingEmail.next_attempt_at <= now)
        .values(attempts=OutgoingEmail.attempts + 1, next_attempt_at=now + LEASE)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if not claimed:
        return False  # sent already, not due, or another worker has it
    email = db.session.get(OutgoingEmail, email_id)
    if email.status is not EmailStatus.PENDING:  # an erasure stopped it since the claim
        db.session.commit()
        return False
    text, html = bodies(email)
    message = EmailMultiAlternatives(
        subject=email.subject, body=text, to=[email.to],
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        headers={"Message-ID": email.message_id})
    message.attach_alternative(html, "text/html")
    attempts = email.attempts
    db.session.commit()
    error, permanent = None, False
    try:
        message.connection = _connection()
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        error, permanent = f"the server refused the address: {exc.recipients}", True
    except (smtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if error is None:
        values = {"status": EmailStatus.SENT, "sent_at": utcnow(), "last_error": None}
    elif permanent or attempts > len(RETRY_DELAYS):
        log.warning("email %s given up: %s", email_id, error)
        values = {"status": EmailStatus.FAILED, "last_error": error}
    else:
        values = {"next_attempt_at": utcnow() + RETRY_DELAYS[attempts - 1], "last_error": error}
    db.session.execute(sa.update(OutgoingEmail).where(OutgoingEmail.id == email_id)
                       .values(**values).execution_options(synchronize_session=False))
    db.session.commit()
    return error is None


def send_due(limit: int = 200) -> int:
    """Send the messages whose (next) attempt is due; how many the server took."""
    due = list(db.session.scalars(
        sa.select(OutgoingEmail.id)
        .where(OutgoingEmail.status == EmailStatus.PENDING,
               OutgoingEmail.next_attempt_at <= utcnow())
        .order_by(OutgoingEmail.next_attempt_at).limit(limit)))
    db.session.commit()
    return sum(send(email_id) for email_id in due)


@dataclass(frozen=True)
class Reply:
    """What the SMTP server answered to the message's data."""
    code: int
    text: str
    refused: dict  # recipient -> (code, reply), when some were refused and others taken


def transmit(message: EmailMessage) -> Reply:
    """Send `message` now, in a conversation of its own; raises smtplib.SMTPException
    (every recipient refused, the message refused) or OSError (no connection)."""
    encoding = message.encoding or "utf-8"
    sender = sanitize_address(message.from_email, encoding)
    recipients = [sanitize_address(address, encoding) for address in message.recipients()]
    connection = _connection()
    connection.open()
    try:
        # smtplib's sendmail does these three steps but drops the server's final reply.
        smtp = connection.connection
        smtp.ehlo_or_helo_if_needed()
        code, text = smtp.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, sender)
        refused = {}
        for recipient in recipients:
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, text)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        code, text = smtp.data(message.message().as_bytes(linesep="\r\n"))
        if code != 250:  # data() raises only when the server will not take any data
            raise smtplib.SMTPDataError(code, text)
        return Reply(code, text.decode("utf-8", "replace"), refused)
    finally:
        connection.close()


def _connection():
    config = current_app.config
    return mail.get_connection(
        backend="smtp", host=config["MAIL_SERVER"], port=config["MAIL_PORT"],
        username=config["MAIL_USERNAME"] or "", password=config["MAIL_PASSWORD"] or "",
        use_tls=config["MAIL_USE_TLS"], use_ssl=config["MAIL_USE_SSL"],
        timeout=config["MAIL_TIMEOUT"])
