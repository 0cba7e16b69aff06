"""Login manager wiring, security headers and the content security policy."""
import logging
import re
from urllib.parse import urlsplit

from flask import Flask, request

from app.extensions import SAFE_METHODS, login_manager

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
BODY_LIMIT_WITHOUT_FILES = 1 << 20  # JSON and other bodies: far above any real request

# Only our own static files: no CDN, no inline script or style (SPEC: works offline).
# The one exception is Stripe.js when card payments are configured: Stripe requires it
# to be loaded from Stripe, so that card numbers never touch our pages.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def framable_policy(form_targets: tuple[str, ...] = ()) -> str:
    """The policy of a page any site may frame (a hosted lead form, SPEC §14), whose
    form may also lead on to the given origins (a seller's thank-you page)."""
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    directives["frame-ancestors"] = "*"
    directives["form-action"] = " ".join(("'self'", *form_targets))
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config) -> str:
    if not (config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_PUBLISHABLE_KEY")):
        return CONTENT_SECURITY_POLICY
    base = config.get("STRIPE_API_BASE")
    js = _origin(config.get("STRIPE_JS_URL") or (base or "https://js.stripe.com"))
    api = _origin(base or "https://api.stripe.com")
    stripe_sources = {
        "script-src": f"'self' {js}",
        "connect-src": f"'self' {api}",
        # 'self': the admins' outbox shows an email's HTML in a sandboxed frame.
        "frame-src": f"'self' {js} https://hooks.stripe.com",
    }
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    directives.update(stripe_sources)
    return "; ".join(f"{name} {value}" for name, value in directives.items())


# The emailed one-time links carry their secret in the path (app/people/account_links.py).
ONE_TIME_LINK = re.compile(r"(/auth/(?:verify-email|reset-password|invitation)/|/opt-out/)(?!new\b|resend\b|accept\b|confirm\b)[^/\s?\"']+")


class RedactOneTimeLinks(logging.Filter):
    """Request logs (the development server's, gunicorn's access log) show those
    paths with the secret cut out: a log reader must not be able to use the link."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):  # gunicorn's access log: its atoms by name
            record.args = {k: _redact(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_redact(a) for a in record.args)
        record.msg = _redact(record.msg)
        return True


def _redact(value):
    return ONE_TIME_LINK.sub(r"\1[redacted]", value) if isinstance(value, str) else value


def redact_request_logs() -> None:
    for name in ("werkzeug", "gunicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactOneTimeLinks) for f in logger.filters):
            logger.addFilter(RedactOneTimeLinks())


def init_security(app: Flask) -> None:
    redact_request_logs()
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(session_id: str):
        from app.people.notification_queries import user_with_unread_count
        from app.services.accounts import load_user_from_session_id
        from app.services.audit import act_as

        # A page (GET) shows the unread count in its navigation bar: read with the user.
        user = load_user_from_session_id(
            session_id, user_with_unread_count if request.method in SAFE_METHODS else None)
        if user is not None:
            act_as(user)
        return user

    def receive_body_first():
        """Take in the whole body before any query: a slow client trickling in a large
        upload must not hold a database connection, nor SQLite's write lock, while it
        does. A body without files is small, so it is bounded tighter than uploads."""
        if request.method in SAFE_METHODS:
            return
        # Only multipart bodies carry files; their other fields are bounded as a whole.
        request.max_form_memory_size = BODY_LIMIT_WITHOUT_FILES
        if request.mimetype != "multipart/form-data":
            request.max_content_length = min(BODY_LIMIT_WITHOUT_FILES,
                                             app.config["MAX_CONTENT_LENGTH"])
        if request.mimetype in FORM_TYPES:
            request.form  # noqa: B018 (parses now; uploaded files spool to disk)
        else:
            request.get_data(cache=True)

    # First of all hooks: CSRF checking would otherwise read the form without the bounds.
    app.before_request_funcs.setdefault(None, []).insert(0, receive_body_first)

    @app.after_request
    def set_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", content_security_policy(app.config))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        if "frame-ancestors 'none'" in headers["Content-Security-Policy"]:
            # Pages that may be framed (a hosted lead form) say so in their own policy.
            headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint and request.endpoint != "static":
            headers.setdefault("Cache-Control", "no-store")
        return response
