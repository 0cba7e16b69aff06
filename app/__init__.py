"""Application factory.

Imports stay inside the functions: ingest worker processes import `app.services…`
and should not pay for Flask and SQLAlchemy they never use."""
import os

from config import CONFIGS, INSTANCE_DIR


def create_app(config_name: str | None = None, **overrides):
    from flask import Flask

    config_name = config_name or os.environ.get("APP_ENV", "development")
    config_class = CONFIGS[config_name]
    if hasattr(config_class, "validate"):
        config_class.validate()

    app = Flask(
        __name__,
        instance_path=str(INSTANCE_DIR),
        template_folder="../templates",
        static_folder="../static",
    )
    app.config.from_object(config_class)
    app.config.update(overrides)
    check_rate_limit_storage(app.config)
    # The instance folder holds the SQLite database and uploads: this user's alone.
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    if os.stat(app.instance_path).st_uid == os.getuid():
        os.chmod(app.instance_path, 0o700)

    register_url_converters(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    register_template_helpers(app)
    return app


def check_rate_limit_storage(config) -> None:
    """Counted in each process's memory, login limits would allow their number once
    per gunicorn worker: production needs one counter that every process shares."""
    if (config["APP_ENV"] == "production" and config.get("RATELIMIT_ENABLED", True)
            and config["RATELIMIT_STORAGE_URI"].startswith("memory://")):
        raise RuntimeError(
            "REDIS_URL must be set in production: login rate limits are counted there, "
            "shared by every web process (or set RATELIMIT_STORAGE_URI to another shared "
            "storage that Flask-Limiter supports)")


def register_url_converters(app) -> None:
    """`<int:…>` stops at the largest INTEGER key and `<bigid:…>` at the largest BIGINT
    key (app.core.bounds): a longer number is a 404, not an overflow in the database.
    A text part (`<token>`, `<public_id>`) never holds a NUL byte, which PostgreSQL
    cannot compare: such a URL is a 404 too."""
    from werkzeug.routing import IntegerConverter, UnicodeConverter

    from app.core import bounds

    class IdConverter(IntegerConverter):
        def __init__(self, map, *args, **kwargs):
            kwargs.setdefault("max", bounds.ID.maximum)
            super().__init__(map, *args, **kwargs)

    class BigIdConverter(IntegerConverter):
        def __init__(self, map, *args, **kwargs):
            kwargs.setdefault("max", bounds.BIG_ID.maximum)
            super().__init__(map, *args, **kwargs)

    class TextConverter(UnicodeConverter):
        def __init__(self, map, *args, **kwargs):
            super().__init__(map, *args, **kwargs)
            self.regex = self.regex.replace("[^/]", "[^/\x00]", 1)

    app.url_map.converters["default"] = app.url_map.converters["string"] = TextConverter
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["bigid"] = BigIdConverter


def register_extensions(app) -> None:
    from app.core import figures  # noqa: F401 (raises accounts' figure revisions at commit)
    from app.core import read_autocommit  # noqa: F401 (PostgreSQL reads without BEGIN)
    from app.core.pool import ping_idle_connections
    from app.extensions import Migrations, csrf, db, limiter, login_manager, mail
    from app.security import init_security
    from app.tasks import init_celery

    db.init_app(app)
    with app.app_context():
        ping_idle_connections(db.engine)
        if app.config.get("FIGURES_CHECK_WRITES"):
            from app.core.figures import check_writes

            check_writes(db.engine)
    app.extensions["migrate"] = Migrations(db)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    mail.init_app(app)
    init_security(app)
    init_celery(app)


def register_blueprints(flask_app) -> None:
    """An area's `__init__` is its blueprint; its route modules add their routes to it
    as they are imported, here, before it is registered. No blueprint imports its
    routes, so the imports run one way (tests/unit/test_import_cycles.py)."""
    import app.admin.funding
    import app.admin.consent
    import app.admin.outbox
    import app.admin.payments
    import app.admin.quality
    import app.admin.returns
    import app.admin.routes
    import app.auth.routes
    import app.auth.team
    import app.auth.two_factor
    import app.buyer.balance
    import app.buyer.consent
    import app.buyer.delivery
    import app.buyer.returns
    import app.buyer.routes
    import app.main.opt_out
    import app.consent.routes
    import app.main.routes
    import app.notifications.routes
    import app.payments.routes
    import app.seller.lead_forms
    import app.seller.payouts
    import app.seller.returns
    import app.seller.routes
    from app.api import init_api

    flask_app.register_blueprint(app.main.bp)
    flask_app.register_blueprint(app.auth.bp, url_prefix="/auth")
    flask_app.register_blueprint(app.seller.bp, url_prefix="/seller")
    flask_app.register_blueprint(app.buyer.bp, url_prefix="/buyer")
    flask_app.register_blueprint(app.admin.bp, url_prefix="/admin")
    flask_app.register_blueprint(app.notifications.bp, url_prefix="/notifications")
    flask_app.register_blueprint(app.payments.bp)  # Stripe's webhook
    flask_app.register_blueprint(app.consent.bp)  # public: hosted forms, certificates
    init_api(flask_app)


def register_error_handlers(app) -> None:
    from app.errors import register_error_handlers as register

    register(app)


def register_commands(app) -> None:
    from app.cli import register_cli

    register_cli(app)


def register_template_helpers(app) -> None:
    from app.formatting import (
        format_average, format_moment, format_money, format_number, format_rate, format_when,
        money_input, user_language, user_locale,
    )

    from app.core.urls import template_url_for

    app.jinja_env.globals["url_for"] = template_url_for
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["average_money"] = format_average
    app.jinja_env.filters["rate"] = format_rate
    app.jinja_env.filters["when"] = format_when  # in the reader's time zone
    app.jinja_env.filters["moment"] = format_moment  # and as their locale writes it
    app.jinja_env.filters["number"] = format_number
    app.jinja_env.filters["money_input"] = money_input  # an amount as a form field spells it
    app.jinja_env.globals["reader_locale"] = lambda: str(user_locale()).replace("_", "-")

    from app.labels import LABELS, describe_filters, label
    from app.services.regions import country_name, region_name

    app.jinja_env.filters["label"] = label
    app.jinja_env.globals["audit_values"] = LABELS["audit_value"]
    app.jinja_env.filters["describe_filters"] = lambda f: describe_filters(f, user_language())
    # "RU-KGD" → its name in the reader's language
    app.jinja_env.filters["region_name"] = lambda code: code and region_name(code, user_language())
    app.jinja_env.filters["country_name"] = lambda code: code and country_name(code, user_language())

    from app.services.returns import REASON_LABELS

    app.jinja_env.filters["return_reason"] = lambda reason: REASON_LABELS[reason]

    from app.market.schedule import clock

    app.jinja_env.filters["clock"] = clock  # minutes after midnight → "08:00"

    from functools import partial

    from flask import has_request_context
    from flask_login import current_user

    from app.people.notifications import time_left_until

    app.jinja_env.filters["time_left_until"] = time_left_until

    from app.auth.sessions import current_account
    from app.core.mail import outbox_enabled
    from app.people.notification_queries import navigation_unread_count

    @app.context_processor
    def navigation() -> dict:
        """The unread count in the navigation bar, on every page of a signed-in user
        (emails are rendered by jobs, outside any request). A function, read only by a
        template that shows it: an htmx fragment (the builder's live estimate, a
        polled panel) has no navigation bar and costs no query for it."""
        if not has_request_context() or not current_user.is_authenticated:
            return {}
        return {"current_account": current_account,
                "unread_notifications": partial(navigation_unread_count, current_user.id),
                "outbox_enabled": current_user.is_admin and outbox_enabled(),
                "mail_kept": outbox_enabled()}
