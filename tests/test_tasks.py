import sqlalchemy as sa

from app import tasks
from app.extensions import db
from app.models import AuditEvent, LedgerAccount
from app.services import ledger


def _events(action):
    return db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)).all()


def test_reconcile_job_records_a_balanced_ledger(app, buyer):
    ledger.manual_credit(buyer, 900, reason="wire", actor=None)
    db.session.commit()
    tasks.dispatch(tasks.reconcile_ledger)
    assert len(_events("ledger.reconciled")) == 1


def test_reconcile_job_flags_a_broken_ledger(app, buyer):
    ledger.manual_credit(buyer, 900, reason="wire", actor=None)
    db.session.execute(sa.update(LedgerAccount).values(balance=LedgerAccount.balance + 1))
    db.session.commit()
    assert tasks.reconcile_ledger.run() is False
    assert len(_events("ledger.reconciliation_failed")) == 1


def test_thread_mode_runs_jobs_outside_the_request(app, buyer):
    db.session.commit()
    app.config["TASK_MODE"] = "thread"
    try:
        future = tasks.dispatch(tasks.reconcile_ledger)
        assert future is not None
        future.result(timeout=30)
    finally:
        app.config["TASK_MODE"] = "eager"
    db.session.expire_all()
    assert len(_events("ledger.reconciled")) == 1
