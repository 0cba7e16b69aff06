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


def test_embedded_mode_runs_the_periodic_jobs(database_url, tmp_path):
    import time

    from app import create_app

    served = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, TASK_MODE="thread",
                        UPLOAD_DIR=str(tmp_path))
    try:
        db.session.commit()
        served.test_client().get("/healthz")  # the first request starts the scheduler
        deadline = time.time() + 20
        while time.time() < deadline and not _events("ledger.reconciled"):
            db.session.commit()
            time.sleep(0.2)
        assert _events("ledger.reconciled")
    finally:
        served.extensions["scheduler_stop"].set()
        time.sleep(1.5)
