"""Fixtures: one app per test session on SQLite (a temp file) or PostgreSQL
(`TEST_DATABASE_URL`), schema built by the real migrations, every table emptied
after each test; clients logged in through the real login form."""
import os
import re
import threading
import time
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_migrate import upgrade
from werkzeug.serving import make_server

from app import create_app
from app.core import figures
from app.extensions import db, limiter
from app.models import Role, User
from app.services import accounts, key_cache, ledger

TEST_PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def pytest_report_header(config):
    return f"database: {_database_url_label()}"


def _database_url_label() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    return sa.engine.make_url(url).render_as_string(hide_password=True) if url else "sqlite"


def on_postgres() -> bool:
    return os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


class IsolatedClient(FlaskClient):
    """Each request gets its own app context (own `g`, own db session), as in
    production; the test's pending writes are committed first so the request sees
    them and the test holds no SQLite write lock while the request runs."""

    def open(self, *args, **kwargs):
        db.session.commit()
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url,
                     UPLOAD_DIR=str(tmp_path_factory.mktemp("uploads")))
    app.test_client_class = IsolatedClient
    with app.app_context():
        if database_url.startswith("postgresql"):
            with db.engine.begin() as conn:  # a throwaway database: start from nothing
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        upgrade(directory=str(Path(__file__).parent.parent / "migrations"))
    return app


@pytest.fixture(autouse=True)
def _app_context_and_clean_tables(app):
    with app.app_context():
        limiter.reset()  # rate-limit counters would otherwise leak between tests
        figures.forget()  # the next test's accounts reuse these ids and revisions
        key_cache.forget()
        yield
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            else:
                for table in tables:
                    conn.exec_driver_sql(f"DELETE FROM {table}")


@pytest.fixture
def client(app):
    return app.test_client()


# The authenticator seeds of the users enrolled in two-factor login, by email.
TOTP_SEEDS: dict[str, str] = {}


def make_user(role: Role | str = Role.BUYER, email: str | None = None,
              password: str = TEST_PASSWORD, *, two_factor: bool | None = None,
              **fields) -> User:
    """A verified user; admins (who must have it) are enrolled in two-factor login."""
    role = Role(role)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    user = accounts.create_user(email or f"{role.value}{count + 1}@example.com", password, role)
    for name, value in fields.items():
        setattr(user, name, value)
    ledger.open_accounts_for(user)
    if two_factor if two_factor is not None else role is Role.ADMIN:
        enrol_two_factor(user)
    db.session.commit()
    return user


def enrol_two_factor(user: User) -> list[str]:
    """Enrol the user as the setup page does (a code computed from the seed); the
    recovery codes."""
    from app.people import two_factor

    seed = two_factor.start_enrolment(user)
    codes = two_factor.confirm_enrolment(user, pyotp.TOTP(seed).now())
    TOTP_SEEDS[user.email] = seed
    return codes


def totp_code(user: User, forget_last: bool = True) -> str:
    """The user's current code. Tests log the same admin in on several clients within
    one 30-second step, and a code is accepted once: unless told not to, this forgets
    the step last accepted first (tests/test_two_factor.py tests the refusal)."""
    seed = TOTP_SEEDS[user.email]
    if forget_last:
        db.session.execute(sa.update(User).where(User.id == user.id).values(totp_last_step=None))
        db.session.commit()  # and touch no model after: browser tests' server must write
    return pyotp.TOTP(seed).now()


def csrf_token(client, url: str = "/auth/login") -> str:
    match = CSRF_RE.search(client.get(url).get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def log_in(client, user: User, password: str = TEST_PASSWORD, remember: bool = False):
    data = {"email": user.email, "password": password, "csrf_token": csrf_token(client)}
    if remember:
        data["remember"] = "y"
    response = client.post("/auth/login", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    if response.headers["Location"].endswith("/auth/two-factor"):
        response = client.post("/auth/two-factor", data={
            "code": totp_code(user), "csrf_token": csrf_token(client, "/auth/two-factor")})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


@pytest.fixture
def seller(app):
    return make_user(Role.SELLER)


@pytest.fixture
def buyer(app):
    return make_user(Role.BUYER)


@pytest.fixture
def admin(app):
    return make_user(Role.ADMIN)


@pytest.fixture
def seller_client(app, seller):
    client = app.test_client()
    log_in(client, seller)
    return client


@pytest.fixture
def buyer_client(app, buyer):
    client = app.test_client()
    log_in(client, buyer)
    return client


@pytest.fixture
def admin_client(app, admin):
    client = app.test_client()
    log_in(client, admin)
    return client


@pytest.fixture
def api_key_for():
    def create(user: User) -> dict[str, str]:
        _, secret = accounts.create_api_key(user, "test")
        db.session.commit()
        return {"Authorization": f"Bearer {secret}"}

    return create


@pytest.fixture(scope="session")
def live_server(app):
    """The app behind a real WSGI server in a thread (browsers and webhooks reach it)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


STRIPE_TEST_CONFIG = {
    "STRIPE_SECRET_KEY": "sk_test_leadx",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_leadx",
    "STRIPE_WEBHOOK_SECRET": "whsec_leadx_tests",
    "STRIPE_CONNECT": "simulated",
}


@pytest.fixture(scope="session")
def stripe_server(live_server):
    """localstripe on 127.0.0.1, sending its signed events to the live app."""
    from tests import stripe_server as localstripe

    base = localstripe.start()
    localstripe.register_webhook(base, f"{live_server}/stripe/webhook",
                                 STRIPE_TEST_CONFIG["STRIPE_WEBHOOK_SECRET"])
    return base


@pytest.fixture
def stripe_app(app, stripe_server):
    """The app configured to talk to localstripe for the length of one test."""
    saved = {key: app.config.get(key) for key in [*STRIPE_TEST_CONFIG, "STRIPE_API_BASE"]}
    app.config.update(STRIPE_TEST_CONFIG, STRIPE_API_BASE=stripe_server)
    app.extensions.pop("stripe_client", None)
    app.extensions.pop("stripe_connect", None)
    yield app
    app.config.update(saved)
    app.extensions.pop("stripe_client", None)
    app.extensions.pop("stripe_connect", None)


def wait_until(check, timeout: float = 10.0, interval: float = 0.1):
    """Poll `check()` (reading the database afresh each time) until it is truthy.
    Each try ends its transaction, so the test never blocks the server's writes."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        db.session.expire_all()
        result = check()
        db.session.rollback()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture(scope="session")
def smtp_server_session():
    from tests.smtp_server import SmtpServer

    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(app, smtp_server_session):
    """The app sends its email to a real SMTP server on loopback for one test."""
    saved = {key: app.config[key] for key in ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS")}
    smtp_server_session.clear()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server_session.port,
                      MAIL_USE_TLS=False)
    yield smtp_server_session
    app.config.update(saved)
