"""Configuration: every setting comes from an environment variable.

`APP_ENV` picks the class (development, production, testing). Development is the
default so that a newcomer can run the marketplace without setting anything; every
other environment refuses to start without real secrets.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    APP_ENV = "base"
    SECRET_KEY = os.environ.get("SECRET_KEY")
    # Key for contact data at rest (urlsafe base64, 32 bytes) and for the keyed hash
    # used to find duplicates without decrypting.
    CONTACT_ENCRYPTION_KEY = os.environ.get("CONTACT_ENCRYPTION_KEY")

    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'leadx.sqlite3'}"
    )
    # No pool_pre_ping: app/core/pool.py pings only connections that sat idle.
    # DB_POOL_SIZE: connections a process keeps open (gunicorn.conf.py sets it from its
    # threads); SQLAlchemy's default keeps 5 and opens and closes the rest per use.
    # Last in, first out: the connections just used are used again, so the others idle,
    # and the ping of a connection idle for a second (app/core/pool.py) stays rare; first
    # in, first out, 48 threads at 50 requests/s took each one idle for ~1 s.
    SQLALCHEMY_ENGINE_OPTIONS: dict = (
        {"pool_size": _env_int("DB_POOL_SIZE", 5), "pool_use_lifo": True}
        if os.environ.get("DB_POOL_SIZE") else {})

    ARGON2_PROFILE = os.environ.get("ARGON2_PROFILE", "RFC_9106_LOW_MEMORY")

    CURRENCY = os.environ.get("CURRENCY", "USD")
    COMMISSION_RATE_BP = _env_int("COMMISSION_RATE_BP", 2000)  # basis points: 20%
    MIN_PRICE = _env_int("MIN_PRICE", 50)  # minor units per lead

    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(INSTANCE_DIR / "uploads"))
    # Rows an upload validates and stores at a time, each chunk in a transaction of its
    # own (on SQLite holding the write lock while it is stored).
    INGEST_CHUNK_ROWS = _env_int("INGEST_CHUNK_ROWS", 5000)
    # SQLite: the contact keys of up to this many stored leads wait to be written in one
    # go (ingest.storing.UnwrittenKeys, 4 MB of shared memory at 25,000); 0 writes each
    # chunk's with its leads. Each write rewrites most of contact_keys' pages: at 1M rows
    # 25,000 took 9% less CPU than 10,000 (40,000 no less).
    INGEST_KEYS_ROWS = _env_int("INGEST_KEYS_ROWS", 25_000)
    # Processes validating rows in parallel; 0 means one per core.
    INGEST_WORKERS = _env_int("INGEST_WORKERS", 0)

    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 200 * 1024 * 1024)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session

    REDIS_URL = os.environ.get("REDIS_URL")
    # Without a broker, background jobs run in a thread of the web process
    # ("thread"); with one they go to Celery workers ("celery"). Tests use "eager".
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL")
    TASK_MODE = os.environ.get("TASK_MODE") or ("celery" if CELERY_BROKER_URL else "thread")
    # Real-time leads are stored and matched by a seller thread of the web process
    # ("thread") or by a process of its own per web process ("process": gunicorn.conf.py;
    # app.market.seller_process).
    REALTIME_SELLER = os.environ.get("REALTIME_SELLER", "thread")

    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or (
        REDIS_URL or "memory://"
    )
    RATELIMIT_HEADERS_ENABLED = True
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")  # address+email
    LOGIN_RATE_LIMIT_PER_IP = os.environ.get("LOGIN_RATE_LIMIT_PER_IP", "30 per minute")
    # Emailed one-time links (SPEC §2): how long each works, and how often one is sent.
    EMAIL_VERIFICATION_HOURS = _env_int("EMAIL_VERIFICATION_HOURS", 48)
    PASSWORD_RESET_MINUTES = _env_int("PASSWORD_RESET_MINUTES", 60)
    INVITATION_DAYS = _env_int("INVITATION_DAYS", 7)
    VERIFICATION_RESEND_RATE_LIMIT = os.environ.get("VERIFICATION_RESEND_RATE_LIMIT",
                                                    "3 per hour")  # per user
    RESET_RATE_LIMIT = os.environ.get("RESET_RATE_LIMIT", "3 per hour")  # per address asked for
    RESET_RATE_LIMIT_PER_IP = os.environ.get("RESET_RATE_LIMIT_PER_IP", "10 per hour")
    OPT_OUT_LINK_HOURS = _env_int("OPT_OUT_LINK_HOURS", 48)  # the emailed confirmation link
    OPT_OUT_RATE_LIMIT_PER_IP = os.environ.get("OPT_OUT_RATE_LIMIT_PER_IP", "10 per hour")
    # Two-factor codes tried per login in progress (or per user changing their settings).
    TWO_FACTOR_RATE_LIMIT = os.environ.get("TWO_FACTOR_RATE_LIMIT", "5 per minute")
    # Hosted lead forms (SPEC §14) are public: submissions per visitor's address and
    # form, and per form from everyone (a bot farm rotating addresses).
    FORM_SUBMIT_RATE_LIMIT_PER_IP = os.environ.get("FORM_SUBMIT_RATE_LIMIT_PER_IP",
                                                   "5 per minute;20 per day")
    FORM_SUBMIT_RATE_LIMIT_PER_FORM = os.environ.get("FORM_SUBMIT_RATE_LIMIT_PER_FORM",
                                                     "120 per minute")

    # Market-wide figures (prices by region, the admin's marketplace page) are
    # recomputed at most this often per process; 0 computes them on every view.
    MARKET_STATS_CACHE_SECONDS = _env_int("MARKET_STATS_CACHE_SECONDS", 300)

    # Buyers' webhook URLs may point at private addresses only in development/tests.
    WEBHOOK_ALLOW_PRIVATE = _env_bool("WEBHOOK_ALLOW_PRIVATE", False)

    # Live bids (ping/post, SPEC §4 rule 9): a real-time lead waits at most
    # PING_DEADLINE_MS for the bids, each bid URL at most PING_BID_TIMEOUT_MS; a
    # seller's ping stands PING_TTL_SECONDS for its post. Whether any order bids at
    # all is looked up at most every PING_CHECK_SECONDS per process (0: every lead).
    PING_DEADLINE_MS = _env_int("PING_DEADLINE_MS", 300)
    PING_BID_TIMEOUT_MS = _env_int("PING_BID_TIMEOUT_MS", 300)
    PING_TTL_SECONDS = _env_int("PING_TTL_SECONDS", 60)
    PING_CHECK_SECONDS = _env_int("PING_CHECK_SECONDS", 1)

    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY")
    # Defaults to js.stripe.com, or to the stand-in a local test server serves.
    STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL")
    # "stripe", or "simulated" for local test servers without Connect (localstripe).
    STRIPE_CONNECT = os.environ.get("STRIPE_CONNECT", "stripe")
    # The exchange's bank account, shown to buyers who fund their balance by bank
    # transfer (each with their own reference). Without BANK_IBAN or
    # BANK_ACCOUNT_NUMBER the balance page offers no bank transfer.
    BANK_ACCOUNT_NAME = os.environ.get("BANK_ACCOUNT_NAME")
    BANK_NAME = os.environ.get("BANK_NAME")
    BANK_IBAN = os.environ.get("BANK_IBAN")
    BANK_BIC = os.environ.get("BANK_BIC")
    BANK_ACCOUNT_NUMBER = os.environ.get("BANK_ACCOUNT_NUMBER")
    BANK_ROUTING_NUMBER = os.environ.get("BANK_ROUTING_NUMBER")
    # How the exchange names itself on receipts and statements; the address's lines
    # are separated by ";".
    EXCHANGE_NAME = os.environ.get("EXCHANGE_NAME", "LeadX")
    EXCHANGE_ADDRESS = os.environ.get("EXCHANGE_ADDRESS", "")
    TOPUP_MINIMUM = _env_int("TOPUP_MINIMUM", 500)
    TOPUP_MAXIMUM = _env_int("TOPUP_MAXIMUM", 10_000_000)
    # A card top-up its buyer leaves waiting (3-D Secure never finished) this long is
    # cancelled at Stripe by the scheduler; until then they may resume or cancel it.
    TOPUP_WAIT_LIMIT_SECONDS = _env_int("TOPUP_WAIT_LIMIT_SECONDS", 3600)
    PAYOUT_MINIMUM = _env_int("PAYOUT_MINIMUM", 1000)
    # Days a buyer may return a lead; the seller's share stays pending until then.
    RETURN_WINDOW_DAYS = _env_int("RETURN_WINDOW_DAYS", 7)
    # A buyer may return at most this share of an order's leads (basis points: 15%).
    RETURN_CAP_BP = _env_int("RETURN_CAP_BP", 1500)
    # Days a seller has to accept or contest a return; silence accepts it.
    SELLER_RESPONSE_DAYS = _env_int("SELLER_RESPONSE_DAYS", 3)
    # Unsold leads older than this lose their contacts (0 keeps them).
    UNSOLD_RETENTION_DAYS = _env_int("UNSOLD_RETENTION_DAYS", 365)

    # Email (SPEC §13) through SMTP; without MAIL_SERVER messages are only kept in the
    # outbox that admins read in the browser (development).
    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = _env_int("MAIL_PORT", 587)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", True)
    MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "LeadX <no-reply@leadx.localhost>")
    MAIL_TIMEOUT = _env_int("MAIL_TIMEOUT", 10)  # seconds per SMTP conversation
    # Where users reach the site: links in emails are made from it.
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:5000")

    API_TITLE = "Lead exchange API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"


class DevelopmentConfig(Config):
    APP_ENV = "development"
    WEBHOOK_ALLOW_PRIVATE = _env_bool("WEBHOOK_ALLOW_PRIVATE", True)
    # Fixed development keys so `flask demo` data stays readable across restarts;
    # production refuses to start with these (see ProductionConfig.validate).
    SECRET_KEY = Config.SECRET_KEY or "dev-only-secret-key-not-for-production"
    CONTACT_ENCRYPTION_KEY = (
        Config.CONTACT_ENCRYPTION_KEY or "ZGV2LW9ubHktY29udGFjdC1rZXktMzItYnl0ZXMhISE="
    )
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Demo bank details (the UK's published example IBAN), so bank transfers can be
    # tried; a real exchange sets its own.
    BANK_ACCOUNT_NAME = Config.BANK_ACCOUNT_NAME or "LeadX Demo Exchange Ltd"
    BANK_NAME = Config.BANK_NAME or "Demo Bank plc (not a real account)"
    BANK_IBAN = Config.BANK_IBAN or ("GB33BUKB20201555555555"
                                     if not Config.BANK_ACCOUNT_NUMBER else None)
    BANK_BIC = Config.BANK_BIC or "BUKBGB22"


class TestingConfig(DevelopmentConfig):
    APP_ENV = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    TASK_MODE = "eager"
    ARGON2_PROFILE = "CHEAPEST"  # hashing cost is not what the tests measure
    INGEST_WORKERS = 1  # tests that need the process pool ask for it
    INGEST_CHUNK_ROWS = 50  # small chunks, so tests cross chunk boundaries
    INGEST_KEYS_ROWS = 120  # keys written every few chunks, so tests cross that too
    MARKET_STATS_CACHE_SECONDS = 0  # every test sees the figures of its own data
    FIGURES_CHECK_WRITES = True  # a write path that forgets app.core.figures.changed() fails
    PING_CHECK_SECONDS = 0  # every test's bidding orders are asked at once
    RATELIMIT_STORAGE_URI = "memory://"
    WTF_CSRF_ENABLED = True
    # Tests that talk to Stripe start localstripe and set these themselves.
    STRIPE_SECRET_KEY = STRIPE_WEBHOOK_SECRET = STRIPE_API_BASE = None


class ProductionConfig(Config):
    APP_ENV = "production"

    @classmethod
    def validate(cls) -> None:
        missing = [
            name for name in ("SECRET_KEY", "CONTACT_ENCRYPTION_KEY") if not getattr(cls, name)
        ]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} must be set in the environment outside development"
            )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
