import re
from pathlib import Path

import pytest

from app import create_app
from app.extensions import limiter
from config import ProductionConfig

ROOT = Path(__file__).parent.parent


def test_security_headers_and_csp(client):
    response = client.get("/auth/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_may_frame_their_own_documents_also_with_stripe_configured(stripe_app, client):
    """The admins' outbox shows an email's HTML in a frame of our own; the Stripe
    sources added to the policy once Stripe is set up must not shut it out."""
    for response in (client.get("/auth/login"), create_app("testing").test_client().get("/auth/login")):
        directives = dict(d.split(" ", 1) for d in response.headers["Content-Security-Policy"].split("; "))
        assert "'self'" in directives.get("frame-src", directives["default-src"]).split()
    assert "hooks.stripe.com" in client.get("/auth/login").headers["Content-Security-Policy"]


def test_templates_load_nothing_from_other_hosts():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "templates").rglob("*.html")
        if re.search(r'(src|href)="(https?:)?//', path.read_text())
    ]
    assert offenders == []


def test_templates_have_no_inline_script_or_style():
    # Emails are not pages: mail clients need inline styles, and the outbox shows them
    # in a sandboxed frame under a policy of their own (no script at all).
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "templates").rglob("*.html")
        if path.parent.name != "email"
        and re.search(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=", path.read_text())
    ]
    assert offenders == []


def test_emails_carry_no_script():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "templates" / "email").rglob("*")
                 if re.search(r"<script|\son\w+=|javascript:", path.read_text())]
    assert offenders == []


def test_vendored_assets_are_served(client):
    for asset in ("vendor/bootstrap-5.3.9/bootstrap.min.css", "vendor/htmx-2.0.11/htmx.min.js",
                  "vendor/chartjs-4.6.1/chart.umd.min.js"):
        assert client.get(f"/static/{asset}").status_code == 200


def test_production_refuses_to_start_without_secrets(monkeypatch):
    monkeypatch.setattr(ProductionConfig, "SECRET_KEY", None)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app("production")


def test_uploads_over_the_limit_get_413(app):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    try:
        response = app.test_client().post("/auth/login", data={"email": "x" * 4096})
        assert response.status_code == 413
        assert "too large" in response.get_data(as_text=True)
    finally:
        app.config["MAX_CONTENT_LENGTH"] = 200 * 1024 * 1024


def test_session_cookie_flags_in_production(app, monkeypatch):
    monkeypatch.setattr(ProductionConfig, "SECRET_KEY", "x" * 32)
    monkeypatch.setattr(ProductionConfig, "CONTACT_ENCRYPTION_KEY", "y" * 44)
    monkeypatch.setattr(ProductionConfig, "RATELIMIT_STORAGE_URI", "redis://127.0.0.1:1/0")
    try:
        production = create_app("production", SQLALCHEMY_DATABASE_URI="sqlite://")
    finally:
        limiter.init_app(app)  # the one shared limiter back on the test app's storage
    assert production.config["SESSION_COOKIE_SECURE"] and production.config["SESSION_COOKIE_HTTPONLY"]
    assert production.config["REMEMBER_COOKIE_SECURE"]
