"""Email (SPEC §13) end to end: stored with the change, sent after commit by a job to a
real SMTP server on loopback (aiosmtpd), retried with backoff while the server is
down, never twice; kept in the development outbox without MAIL_SERVER."""
from datetime import timedelta

import sqlalchemy as sa

from app.core import mail, mail_jobs
from app.extensions import db
from app.models import EmailStatus, OutgoingEmail, Role
from app.models.types import utcnow
from tests.conftest import log_in, make_user
from tests.smtp_server import bodies


def _queue(to="someone@example.com", **context) -> OutgoingEmail:
    context = {"title": "Hello", "paragraphs": ["First paragraph.", "Second one."],
               "items": ["one", "two"], "link": "http://127.0.0.1:5000/notifications/",
               "link_label": "Open", "kind_label": "Test", "settings_link": "http://x/s",
               **context}
    return mail.queue(to, "Hello from LeadX", "notification", kind="test", **context)


def _make_due(email_id: int) -> None:
    db.session.execute(sa.update(OutgoingEmail).where(OutgoingEmail.id == email_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_queued_email_is_sent_after_commit_with_text_and_html(app, smtp_server):
    email = _queue()
    assert smtp_server.messages == []  # nothing leaves before the commit
    db.session.commit()
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "someone@example.com"
    assert message["Subject"] == "Hello from LeadX"
    assert message["From"] == app.config["MAIL_DEFAULT_SENDER"]
    text, html = bodies(message)
    assert "First paragraph." in text and "- two" in text
    assert "http://127.0.0.1:5000/notifications/" in text
    assert "<li>two</li>" in html and 'href="http://127.0.0.1:5000/notifications/"' in html
    db.session.expire_all()
    stored = db.session.get(OutgoingEmail, email.id)
    assert stored.status is EmailStatus.SENT and stored.attempts == 1
    assert message["Message-ID"] == stored.message_id
    assert mail_jobs.send(email.id) is False  # sent is final: never twice
    assert len(smtp_server.messages) == 1


def test_a_rolled_back_change_sends_nothing(app, smtp_server):
    _queue()
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutgoingEmail)) == 0
    assert smtp_server.messages == []


def test_smtp_down_keeps_the_message_and_retries_with_backoff(app, smtp_server):
    smtp_server.refuse = True
    email = _queue()
    db.session.commit()  # the job tries once and is refused (451)
    db.session.expire_all()
    stored = db.session.get(OutgoingEmail, email.id)
    assert stored.status is EmailStatus.PENDING and stored.attempts == 1
    assert "451" in stored.last_error
    assert stored.next_attempt_at > utcnow() + timedelta(seconds=30)  # backoff
    assert mail_jobs.send_due() == 0  # not due yet
    smtp_server.refuse = False
    _make_due(email.id)
    assert mail_jobs.send_due() == 1
    [message] = smtp_server.wait_for(1)
    assert message["Message-ID"] == stored.message_id
    db.session.expire_all()
    assert db.session.get(OutgoingEmail, email.id).status is EmailStatus.SENT


def test_an_unreachable_server_is_retried_then_given_up(app, smtp_server):
    app.config["MAIL_PORT"] = _closed_port()
    email = _queue()
    db.session.commit()  # the first attempt
    for _ in mail_jobs.RETRY_DELAYS[1:]:
        _make_due(email.id)
        mail_jobs.send_due()
    db.session.expire_all()
    stored = db.session.get(OutgoingEmail, email.id)
    assert stored.status is EmailStatus.PENDING
    assert stored.attempts == len(mail_jobs.RETRY_DELAYS)
    _make_due(email.id)
    mail_jobs.send_due()
    db.session.expire_all()
    stored = db.session.get(OutgoingEmail, email.id)
    assert stored.status is EmailStatus.FAILED
    assert stored.attempts == len(mail_jobs.RETRY_DELAYS) + 1
    assert "Connection refused" in stored.last_error or "Errno" in stored.last_error


def test_a_message_claimed_by_another_worker_is_not_sent_again(app, smtp_server):
    smtp_server.refuse = True
    email = _queue()
    db.session.commit()
    _make_due(email.id)
    # Another worker claims it (its lease moves the next attempt ahead) ...
    db.session.execute(sa.update(OutgoingEmail).where(OutgoingEmail.id == email.id)
                       .values(next_attempt_at=utcnow() + mail_jobs.LEASE))
    db.session.commit()
    smtp_server.refuse = False
    assert mail_jobs.send(email.id) is False  # ... so this one leaves it alone
    assert smtp_server.messages == []


def test_without_mail_server_messages_stay_in_the_outbox_an_admin_reads(app, client):
    assert not app.config["MAIL_SERVER"]
    email = _queue(to="buyer@example.com")
    db.session.commit()
    assert email.status is EmailStatus.KEPT
    admin = make_user(Role.ADMIN)
    log_in(client, admin)
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "buyer@example.com" in page and "Hello from LeadX" in page
    page = client.get(f"/admin/outbox/{email.id}").get_data(as_text=True)
    assert "First paragraph." in page  # the text body
    # Its links can be followed from the text (the framed HTML may not navigate).
    assert ('<a href="http://127.0.0.1:5000/notifications/" rel="noopener" target="_blank">'
            in page)
    assert f"/admin/outbox/{email.id}/body.html" in page  # the HTML body, framed
    body = client.get(f"/admin/outbox/{email.id}/body.html")
    assert "<li>two</li>" in body.get_data(as_text=True)
    assert "sandbox" in body.headers["Content-Security-Policy"]
    assert "script-src" not in body.headers["Content-Security-Policy"]  # default-src 'none'
    assert client.get("/admin/outbox/999999").status_code == 404


def test_the_outbox_is_for_admins_and_only_without_smtp(app, client, smtp_server):
    seller = make_user(Role.SELLER)
    log_in(client, seller)
    assert client.get("/admin/outbox").status_code == 403
    admin = make_user(Role.ADMIN)
    admin_client = app.test_client()
    log_in(admin_client, admin)
    assert admin_client.get("/admin/outbox").status_code == 404  # mail is sent: no outbox


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns
