"""REST API under /api/v1 (SPEC §11), its setup: the flask-smorest `Api`, and `init_api`,
which registers the route modules (account, batches, orders, money, returns, kpis,
notifications, journeys, pingpost, admin, docs) on an app. Those import what they share from `app.api.auth` and
`app.api.schemas`, never this package, so the imports run one way."""
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask_smorest import Api

from app.api.schemas import ApiErrorSchema
from app.extensions import csrf

API_PREFIX = "/api/v1"


class LeadExchangeApi(Api):
    ERROR_SCHEMA = ApiErrorSchema  # documents the SPEC §11 error shape on every endpoint

    def _register_error_handlers(self):
        # app.errors renders every error, JSON under /api/ and HTML elsewhere.
        pass


api = LeadExchangeApi()


class CookieSessionsOutsideApi(SecureCookieSessionInterface):
    """The API never honours the session cookie (bearer keys only): its requests get
    an empty session without a cookie read or a signer built for it (and, left
    unchanged, none is written)."""

    def open_session(self, app, request):
        if request.path.startswith(API_PREFIX + "/"):
            return self.session_class()
        return super().open_session(app, request)


def init_api(app: Flask) -> None:
    from app.api import (
        account, admin, batches, certificates, docs, journeys, kpis, money, notifications,
        orders, pingpost, returns, opt_outs, suppressions,
    )

    app.session_interface = CookieSessionsOutsideApi()
    api.init_app(
        app,
        spec_kwargs={
            "info": {
                "description": "Sell and buy consented leads. Authenticate with "
                "`Authorization: Bearer <api key>`; create keys in the web app (your name ▾ → API keys) "
                "or with `flask users api-key --email E`."
            },
        },
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "API key"}
    )
    api.spec.options["security"] = [{"bearerAuth": []}]
    api.ma_plugin.converter.add_attribute_function(_configured_bounds(app))
    for blueprint in (account.blp, batches.blp, orders.blp, money.blp, returns.blp, kpis.blp,
                      notifications.blp, journeys.blp, pingpost.blp, admin.blp,
                      suppressions.blp, opt_outs.blp):
        csrf.exempt(blueprint)  # bearer keys only, never the session cookie
        api.register_blueprint(blueprint, url_prefix=f"{API_PREFIX}{blueprint.url_prefix or ''}")
    csrf.exempt(certificates.blp)  # public and read-only
    api.register_blueprint(certificates.blp, url_prefix=f"{API_PREFIX}/certificates")
    app.register_blueprint(docs.bp)


def _configured_bounds(app: Flask):
    """Document the bounds an `Int` field takes from settings (the minimum price, the
    top-up limits) as this app is configured."""

    def bounds_of(converter, field, **kwargs) -> dict:
        return {bound: app.config[key]
                for bound, key in getattr(field, "config_bounds", {}).items() if key}

    return bounds_of
