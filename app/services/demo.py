"""Demo data for `flask demo`: invented people only, generated from a fixed seed."""
import io
from dataclasses import dataclass

from sqlalchemy import func, select

from app.core import events
from app.errors import Conflict
from app.extensions import db
from app.models import Role, TrustLevel, User
from app.people import two_factor
from app.services import accounts, demo_leads, ledger, outcomes, quality
from app.market import filters, jobs, operations
from app.services.ingest import pipeline

DEMO_PASSWORD = "demo-password-1"
# The demo admin's two-factor seed. Admins must sign in with a code (SPEC §2); this one
# is published (`flask demo-code` prints its current code), so it is for demo data only.
DEMO_ADMIN_TOTP_SEED = "LEADXDEMOADMINTOTPSEEDPUBLISHED2"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str


DEMO_USERS = [
    ("admin", "admin@demo.example.com", "Exchange Admin", None),
    ("seller", "blogger@demo.example.com", "Healthy Living Blog", TrustLevel.VERIFIED),
    ("seller", "landing@demo.example.com", "Mortgage Landing Pages", TrustLevel.NEW),
    ("seller", "leadfarm@demo.example.com", "Quick Leads Agency", TrustLevel.VERIFIED),
    ("buyer", "insurer@demo.example.com", "Sunrise Insurance", None),
    ("buyer", "bank@demo.example.com", "Northbank Mortgages", None),
]
DEMO_BUYER_FUNDS = 500_000  # minor units each
# Buyers who let sellers name them on hosted forms (SPEC §14).
DEMO_NAMED_BUYERS = {"insurer@demo.example.com"}
# (seller email, seed, rows, floor price, cap, site)
DEMO_BATCHES = [
    ("blogger@demo.example.com", 1, 400, 150, 2, "healthy-living.example.com"),
    ("blogger@demo.example.com", 2, 250, 200, 1, "healthy-living.example.com"),
    ("landing@demo.example.com", 3, 300, 300, 1, "best-mortgage.example.com"),
]
# A suspicious batch (SPEC §7 signals): verified seller, so it sells before anyone
# checks it; it tops the admin's spot-check queue, and failing it refunds its buyers.
DEMO_SUSPICIOUS_BATCH = ("leadfarm@demo.example.com", 4, 80, 100, 1, "cheap-leads.example.com")
# (buyer email, order name, price, quantity, filters): they fill from the live batches.
DEMO_ORDERS = [
    ("insurer@demo.example.com", "Car insurance, California", 350, 60,
     {"regions": ["US-CA"], "age_min": 25, "age_max": 65}),
    ("insurer@demo.example.com", "Health plans, any region", 250, 200, {"require": "phone"}),
    ("insurer@demo.example.com", "Home insurance, Russia, warm+", 280, 40,
     {"countries": ["RU"], "min_temperature": "warm"}),
    ("bank@demo.example.com", "Mortgages, exclusive", 600, 40,
     {"exclusive_only": True, "age_min": 30}),
    ("bank@demo.example.com", "Credit cards, women 25-45", 300, 80,
     {"genders": ["f"], "age_min": 25, "age_max": 45}),
]


def demo_emails() -> list[str]:
    return [email for _, email, _, _ in DEMO_USERS]


def database_is_empty() -> bool:
    return not db.session.scalar(select(func.count()).select_from(User))


def load_demo() -> list[DemoLogin]:
    if not database_is_empty():
        raise Conflict("The database already has users; `flask demo` loads into an empty one.")
    logins = []
    for role, email, name, trust in DEMO_USERS:
        user = accounts.create_user(email, DEMO_PASSWORD, Role(role), display_name=name)
        ledger.open_accounts_for(user)
        if trust is not None:
            user.trust_level = trust
        if user.is_admin:
            two_factor.enable_with_seed(user, DEMO_ADMIN_TOTP_SEED)
        if user.is_buyer:
            user.named_on_forms = email in DEMO_NAMED_BUYERS
            ledger.manual_credit(user, DEMO_BUYER_FUNDS, reason="Demo opening balance",
                                 actor=None, idempotency_key=f"demo:opening:{user.id}")
        logins.append(DemoLogin(role, email, DEMO_PASSWORD))
    db.session.flush()
    for email, seed, rows, floor_price, cap, site in [*DEMO_BATCHES, DEMO_SUSPICIOUS_BATCH]:
        seller = accounts.user_by_email(email)
        make = demo_leads.suspicious_csv if email == DEMO_SUSPICIOUS_BATCH[0] else demo_leads.demo_csv
        data = make(seed, rows, site=site)
        token = pipeline.stage_upload(seller, io.BytesIO(data))
        with events.muted():  # processed here and now, not by a background job
            batch = pipeline.create_batch(seller, token, f"{site}-export-{seed}.csv",
                                          pipeline.check_terms("US", floor_price, cap))
            db.session.commit()
        pipeline.process_batch(batch.id)
        quality.assess_batch(batch.id)
    for email, name, price, quantity, wanted in DEMO_ORDERS:
        buyer = accounts.user_by_email(email)
        with events.muted():  # filled here and now, not by a background job
            order, _ = operations.place_order(buyer, filters.Filters.parse(wanted),
                                              operations.check_terms(price, quantity, name=name))
            db.session.commit()
        jobs.fill_order(order.id)
        db.session.commit()
    record_demo_outcomes()
    return logins


# Order name → (share converted, share bad, revenue range in minor units): orders that
# differ enough for the KPI page to have something to compare.
DEMO_OUTCOMES = {
    "Car insurance, California": (0.22, 0.10, (2_000, 6_000)),
    "Health plans, any region": (0.08, 0.20, (1_500, 4_000)),
    "Mortgages, exclusive": (0.30, 0.05, (5_000, 15_000)),
    "Credit cards, women 25-45": (0.12, 0.12, (1_000, 3_000)),
    "Home insurance, Russia, warm+": (0.15, 0.08, (3_000, 8_000)),
}


def record_demo_outcomes(seed: int = 7) -> None:
    """What the demo buyers learned of most of their delivered leads (a fixed seed)."""
    import random

    from app.models import Order, OutcomeStatus, Sale

    rng = random.Random(seed)
    for order in db.session.scalars(select(Order).order_by(Order.id)):
        converted, bad, (low, high) = DEMO_OUTCOMES.get(order.name, (0.1, 0.1, (1_000, 5_000)))
        entries = []
        for sale_id in db.session.scalars(select(Sale.id).where(Sale.order_id == order.id)
                                          .order_by(Sale.id)):
            draw = rng.random()
            if draw < converted:
                entries.append((sale_id, OutcomeStatus.CONVERTED, rng.randrange(low, high, 50)))
            elif draw < converted + bad:
                entries.append((sale_id, OutcomeStatus.BAD, None))
            elif draw < 0.85:  # the rest not called back yet
                entries.append((sale_id, OutcomeStatus.CONTACTED, None))
        if entries:
            outcomes.record_many(order.buyer, entries)
        db.session.commit()


def demo_admin_code() -> str:
    """The demo admin's current two-factor code (computed from the published seed)."""
    return two_factor.current_code(DEMO_ADMIN_TOTP_SEED)
