"""Background jobs: thin functions that call services, Celery tasks in "celery" mode.

Three modes (config TASK_MODE):
- "celery": with CELERY_BROKER_URL (Redis), tasks go to `celery -A app.worker worker`.
- "thread": the embedded default, no Redis; tasks run in a small thread pool inside
  the web process. Long jobs write their progress to the database either way, so the
  UI polls the same thing in both modes.
- "eager": tests; the task runs before `dispatch` returns, in an app context (and so
  a database session) of its own, as it would in a worker.

Views and the API launch nothing: operations record events (app.core.events), and
the handlers registered at the end of this module dispatch the jobs once the
transaction that recorded them has committed.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from flask import Flask, current_app

from app.core import events
from app.extensions import db

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A background job: the function that does it, under the name Celery knows it by."""

    name: str
    run: Callable


JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Callable], Job]:
    """The decorated function as the job `name` (a Celery task of that name in "celery" mode)."""
    def register(function: Callable) -> Job:
        JOBS[name] = Job(name, function)
        return JOBS[name]

    return register


_executors: dict[str, ThreadPoolExecutor] = {}
# Webhooks get threads of their own: speed to lead must not queue behind an upload.
THREAD_POOLS = {"app.tasks.deliver_webhooks": ("leadx-webhook", 8),
                # Nor email behind an upload, nor webhooks behind a slow SMTP server.
                "app.tasks.send_emails": ("leadx-mail", 2),
                "app.tasks.deliver_by_email": ("leadx-mail", 2)}
STAGED_UPLOAD_MAX_AGE_SECONDS = 86400  # a seller may come back to the confirm step within a day
# Periodic jobs: Celery beat's schedule, and the embedded scheduler's.
BEAT_SCHEDULE = {
    "reconcile-ledger": {"task": "app.tasks.reconcile_ledger", "schedule": 3600.0},
    "resume-stalled-batches": {"task": "app.tasks.resume_stalled_batches", "schedule": 300.0},
    "match-open-orders": {"task": "app.tasks.match_open_orders", "schedule": 60.0},
    "retry-webhooks": {"task": "app.tasks.retry_webhooks", "schedule": 15.0},
    "retry-emails": {"task": "app.tasks.retry_emails", "schedule": 60.0},
    "send-email-deliveries": {"task": "app.tasks.send_email_deliveries", "schedule": 60.0},
    "release-earnings": {"task": "app.tasks.release_earnings", "schedule": 600.0},
    # Hourly, but a seller is paid at most once a day (one payout per day).
    "run-payouts": {"task": "app.tasks.run_payouts", "schedule": 3600.0},
    "retry-payments": {"task": "app.tasks.retry_payments", "schedule": 300.0},
    "close-abandoned-topups": {"task": "app.tasks.close_abandoned_topups", "schedule": 600.0},
    "accept-overdue-returns": {"task": "app.tasks.accept_overdue_returns", "schedule": 900.0},
    "purge-unsold-leads": {"task": "app.tasks.purge_unsold_leads", "schedule": 86400.0},
    "assess-realtime-batches": {"task": "app.tasks.assess_realtime_batches", "schedule": 600.0},
    "refresh-seller-points": {"task": "app.tasks.refresh_seller_points", "schedule": 3600.0},
    "remove-stale-uploads": {"task": "app.tasks.remove_stale_uploads", "schedule": 3600.0},
}


def init_celery(app: Flask) -> None:
    if app.config["TASK_MODE"] == "celery":
        celery_for(app)
    elif app.config["TASK_MODE"] == "thread":
        start_embedded_scheduler(app)


def celery_for(app: Flask) -> Celery:
    """The app's Celery, with every job as a task: made at app creation in "celery"
    mode (the web process sends tasks, `celery -A app.worker` runs them), never in
    "thread" or "eager" mode, whose processes need not carry Celery and kombu (5 MB)."""
    if "celery" in app.extensions:
        return app.extensions["celery"]
    from celery import Celery, Task

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery("leadx", task_cls=FlaskTask)
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"] or "memory://",
        task_ignore_result=True,
        task_acks_late=True,  # a worker that dies mid-task leaves the task for another
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        beat_schedule=BEAT_SCHEDULE,
    )
    for name, registered in JOBS.items():
        celery.task(name=name, shared=False)(registered.run)
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def start_embedded_scheduler(app: Flask) -> None:
    """Embedded mode has no Celery beat: the periodic jobs (matching for delivery windows
    and caps' periods, webhook retries, stalled uploads, reconciliation) run in a daemon
    thread of the serving process, started by its first request."""
    started, stop = threading.Event(), threading.Event()
    app.extensions["scheduler_stop"] = stop

    def loop() -> None:
        due = {name: 0.0 for name in BEAT_SCHEDULE}
        while not stop.is_set():
            for name, entry in BEAT_SCHEDULE.items():
                if time.monotonic() >= due[name]:
                    due[name] = time.monotonic() + entry["schedule"]
                    try:
                        _run_in_app_context(app, JOBS[entry["task"]], ())
                    except Exception:  # logged by _run_in_app_context; try again next time
                        pass
            stop.wait(1)

    @app.before_request
    def start_once() -> None:
        if not started.is_set():
            started.set()
            threading.Thread(target=loop, daemon=True, name="leadx-scheduler").start()


def dispatch(task: Job, *args) -> Future | None:
    """Run `task(*args)` in the background the way this deployment is configured."""
    mode = current_app.config["TASK_MODE"]
    if mode == "celery":
        celery_for(current_app._get_current_object()).tasks[task.name].delay(*args)
        return None
    if mode == "eager":
        _run_in_app_context(current_app._get_current_object(), task, args)
        return None
    prefix, threads = THREAD_POOLS.get(task.name, ("leadx-job", 2))
    if prefix not in _executors:
        _executors[prefix] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=prefix)
    app = current_app._get_current_object()
    return _executors[prefix].submit(_run_in_app_context, app, task, args)


def _run_in_app_context(app: Flask, task: Job, args: tuple) -> None:
    with app.app_context():
        try:
            task.run(*args)
        except Exception:
            log.exception("background job %s%r failed", task.name, args)
            db.session.rollback()
            raise
        finally:
            db.session.remove()


@job("app.tasks.reconcile_ledger")
def reconcile_ledger() -> bool:
    """Prove the books and record the outcome in the audit log."""
    from app.services import audit, ledger

    result = ledger.reconcile()
    audit.record(
        "ledger.reconciled" if result.ok else "ledger.reconciliation_failed",
        actor=None,
        details={
            "ledger_total": result.ledger_total,
            "mismatched_accounts": result.mismatched_accounts[:50],
            "unbalanced_transactions": result.unbalanced_transactions[:50],
        },
    )
    db.session.commit()
    if not result.ok:
        log.error("ledger reconciliation failed: %s", result)
    return result.ok


@job("app.tasks.process_batch")
def process_batch(batch_id: int) -> None:
    """Process an upload; if it went live, offer its leads to the open orders."""
    from app.models import Batch, BatchStatus
    from app.services.ingest import pipeline

    pipeline.process_batch(batch_id)
    assess_batch_risk(batch_id)
    batch = db.session.get(Batch, batch_id)
    if batch is not None and batch.status is BatchStatus.LIVE:
        match_batch.run(batch_id)


def assess_batch_risk(batch_id: int) -> None:
    """Fraud signals and risk score (SPEC §7); a failure here must not stop the batch."""
    from app.services import quality

    try:
        quality.assess_batch(batch_id)
    except Exception:
        log.exception("risk assessment of batch %s failed", batch_id)
        db.session.rollback()


@job("app.tasks.assess_realtime_batches")
def assess_realtime_batches() -> int:
    """Real-time batches grow lead by lead: assess them again when they have grown
    (cheaper than a full assessment on every posted lead)."""
    from app.services import quality

    stale = quality.stale_realtime_batches()
    for batch_id in stale:
        assess_batch_risk(batch_id)
    return len(stale)


@job("app.tasks.match_batch")
def match_batch(batch_id: int) -> None:
    from app.market import jobs

    jobs.match_batch(batch_id)  # its sales' webhooks go as each commits (SalesMade)
    db.session.commit()


@job("app.tasks.fill_order")
def fill_order(order_id: int) -> None:
    from app.market import jobs

    jobs.fill_order(order_id)
    db.session.commit()


@job("app.tasks.match_open_orders")
def match_open_orders() -> int:
    from app.market import jobs

    settlement = jobs.match_open_orders()
    db.session.commit()
    return len(settlement.sale_ids)


@job("app.tasks.deliver_webhooks")
def deliver_webhooks(sale_ids: list[int]) -> None:
    from app.aftersale.delivery import engine

    engine.deliver_sales(sale_ids)


@job("app.tasks.deliver_by_email")
def deliver_by_email(sale_ids: list[int]) -> int:
    """The sales' messages to orders that take one per lead, and resent digests."""
    from app.aftersale.delivery import emailing

    return emailing.deliver_sales(sale_ids)


@job("app.tasks.retry_webhooks")
def retry_webhooks() -> int:
    from app.aftersale.delivery import engine

    due = engine.due_deliveries()
    for delivery_id in due:
        engine.deliver(delivery_id)
    return len(due)


@job("app.tasks.send_email_deliveries")
def send_email_deliveries() -> int:
    """Digests of leads by email whose hour or day has ended, and retries now due."""
    from app.aftersale.delivery import emailing

    return emailing.send_due()


@job("app.tasks.send_emails")
def send_emails(email_ids: list[int]) -> int:
    from app.core import mail_jobs

    return sum(mail_jobs.send(email_id) for email_id in email_ids)


@job("app.tasks.retry_emails")
def retry_emails() -> int:
    """Emails the SMTP server did not take yet (down, or a worker died mid-send)."""
    from app.core import mail_jobs

    return mail_jobs.send_due()


@job("app.tasks.tell_orders_filled")
def tell_orders_filled(order_ids: list[int]) -> int:
    from app.people import notification_jobs

    return notification_jobs.orders_filled(order_ids)


@job("app.tasks.tell_caps_used")
def tell_caps_used(order_ids: list[int]) -> None:
    from app.people import notification_jobs

    notification_jobs.caps_used(order_ids)


@job("app.tasks.resume_stalled_batches")
def resume_stalled_batches(older_than_seconds: int = 600) -> list[int]:
    """Queue again the batches whose job died (its worker crashed or was stopped)."""
    from app.services.ingest import pipeline

    stalled = pipeline.stalled_batches(older_than_seconds)
    db.session.commit()  # an eager job has a session of its own: hold no lock here
    for batch_id in stalled:
        dispatch(process_batch, batch_id)
    return stalled


@job("app.tasks.remove_stale_uploads")
def remove_stale_uploads() -> int:
    """Files of uploads abandoned at the confirm step (after a day) or left by a run
    that died: they hold contacts in clear."""
    from app.services.ingest import pipeline

    return pipeline.remove_stale_uploads(STAGED_UPLOAD_MAX_AGE_SECONDS)


@job("app.tasks.release_earnings")
def release_earnings() -> int:
    from app.services import earnings

    return earnings.release_cleared()


@job("app.tasks.run_payouts")
def run_payouts() -> int:
    from datetime import datetime, timezone

    from app.services import payments

    if not payments.configured():
        return 0  # the embedded demo: sellers' money waits on their balance
    return len(payments.run_payouts(datetime.now(timezone.utc).date()))


@job("app.tasks.retry_payments")
def retry_payments() -> int:
    from app.services import autotopup, payments

    if not payments.configured():
        return 0
    return payments.retry_unfinished() + autotopup.resume_stuck()


@job("app.tasks.close_abandoned_topups")
def close_abandoned_topups() -> int:
    from app.services import payments

    if not payments.configured():
        return 0
    return payments.close_abandoned_topups()


@job("app.tasks.accept_overdue_returns")
def accept_overdue_returns() -> int:
    from app.services import returns

    return returns.accept_overdue()


@job("app.tasks.purge_unsold_leads")
def purge_unsold_leads() -> int:
    from app.services import privacy

    return privacy.purge_unsold()


@job("app.tasks.refresh_seller_points")
def refresh_seller_points() -> int:
    """Bring each seller's record (acceptance, returns, buyers' feedback) into the
    scores of its unsold leads. Freshness needs no job: queries compute it."""
    from app.services import scoring

    return scoring.refresh_seller_points()


@job("app.tasks.check_auto_topup")
def check_auto_topup(account_id: int) -> None:
    """A buyer's available balance went down: top up from their saved card if due."""
    from app.services import autotopup

    autotopup.check(account_id)


# Follow-up work: after the commit of the transaction that recorded the event.
events.on(events.EmailsQueued, lambda e: dispatch(send_emails, list(e.email_ids)))
events.on(events.OrdersFilled, lambda e: dispatch(tell_orders_filled, list(e.order_ids)))
events.on(events.OrdersCapped, lambda e: dispatch(tell_caps_used, list(e.order_ids)))
events.on(events.BatchUploaded, lambda e: dispatch(process_batch, e.batch_id))
events.on(events.BatchWentLive, lambda e: dispatch(match_batch, e.batch_id))
events.on(events.BatchRelisted, lambda e: dispatch(match_batch, e.batch_id))
events.on(events.OrderEvent, lambda e: dispatch(fill_order, e.order_id))
events.on(events.WebhooksDue, lambda e: dispatch(deliver_webhooks, list(e.sale_ids)))
events.on(events.WebhooksDue,
          lambda e: e.by_email and dispatch(deliver_by_email, list(e.sale_ids)))
events.on(events.BuyerFundsLowered, lambda e: dispatch(check_auto_topup, e.account_id))
