"""Several processes spend from one buyer's balance at once: never overdrawn, each
idempotency key applied once, the books balanced. Runs on the suite's database
(SQLite file, and PostgreSQL in the PostgreSQL run)."""
import multiprocessing

import sqlalchemy as sa

from app.extensions import db
from app.models import LedgerTransaction
from app.services import ledger
from tests.conftest import make_user

PROCESSES = 4
ATTEMPTS_PER_PROCESS = 60
FUNDS = 5_000  # less than all the holds together, so money runs out mid-race
# Every process tries the same keys, so each key races against the other processes.
AMOUNT_FOR_KEY = {f"hold:{i}": 50 + (i * 37) % 200 for i in range(ATTEMPTS_PER_PROCESS)}


def _spend_concurrently(database_url: str, buyer_id: int, start, results) -> None:
    from app import create_app
    from app.errors import InsufficientFunds
    from app.models import AccountKind, User
    from app.services.ledger import Posting

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    applied = refused = 0
    with app.app_context():
        start.wait()
        for key, amount in AMOUNT_FOR_KEY.items():
            buyer = db.session.get(User, buyer_id)
            try:
                ledger.post("hold", [
                    Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -amount),
                    Posting(ledger.account(AccountKind.BUYER_HELD, buyer), amount),
                ], idempotency_key=key)
                db.session.commit()
                applied += 1
            except InsufficientFunds:
                db.session.rollback()
                refused += 1
    results.put((applied, refused))


def test_concurrent_spending_never_overdraws(app, database_url):
    buyer = make_user()
    ledger.manual_credit(buyer, FUNDS, reason="wire", actor=None)
    db.session.commit()
    buyer_id = buyer.id
    db.session.commit()

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_spend_concurrently, args=(database_url, buyer_id, start, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    balance = ledger.balance_for(db.session.get(type(buyer), buyer_id))
    holds = db.session.scalars(
        sa.select(LedgerTransaction.idempotency_key).where(LedgerTransaction.kind == "hold")
    ).all()
    assert len(holds) == len(set(holds))  # each key at most once
    held = sum(AMOUNT_FOR_KEY[key] for key in holds)
    assert balance.held == held
    assert balance.available == FUNDS - held >= 0
    # Spending stopped only because the money ran out: no key that fit was refused.
    assert min(AMOUNT_FOR_KEY[k] for k in AMOUNT_FOR_KEY if k not in holds) > balance.available
    assert sum(applied for applied, _ in outcomes) >= len(holds)
    assert ledger.reconcile().ok
