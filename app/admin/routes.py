"""Admin area routes: marketplace overview, users and trust, manual credits, audit log."""
from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from app.admin import bp, overview
from app.admin.forms import ManualCreditForm, ManualDebitForm, ManualPayoutForm, TrustForm
from app.core import bounds
from app.errors import DomainError, NotFound
from app.extensions import db
from app.formatting import format_money
from app.models import AuditEvent, Batch, Role, User
from app.money import receipts
from app.people.membership import account_of
from app.services import (
    accounts, audit, bank_transfers, ledger, manual_payouts, market_stats, trust,
)
from app.services import batches as batch_listing

PAGE_SIZE = 50


def escape_like(text: str) -> str:
    """Make % and _ in a search box match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@bp.route("/")
def dashboard():
    days = bounds.COUNT.take(request.args.get("days", "30"), "days")
    days = days if days in market_stats.PERIODS else 30
    return render_template("admin/dashboard.html", overview=overview.overview(days),
                           periods=market_stats.PERIODS)


@bp.route("/users")
def users():
    query = select(User).order_by(User.id.desc())
    role = request.args.get("role", "")
    search = request.args.get("q", "").strip()
    if role in {r.value for r in Role}:
        query = query.where(User.role == Role(role))
    if search:
        like = f"%{escape_like(search.lower())}%"
        query = query.where(or_(func.lower(User.email).like(like, escape="\\"),
                                func.lower(User.display_name).like(like, escape="\\")))
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all()
    return render_template(
        "admin/users.html", users=rows[:PAGE_SIZE], has_next=len(rows) > PAGE_SIZE,
        page=page, role=role, q=search, roles=[r.value for r in Role],
    )


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def account_or_404(user_id: int) -> User:
    """The account whose money and trust an admin changes from a user's page: a company
    member's is their company's."""
    return account_of(_user_or_404(user_id))


@bp.route("/users/<int:user_id>", methods=["GET"])
def user_detail(user_id: int):
    user = _user_or_404(user_id)
    account = account_of(user)  # a company member's money and trust are the company's
    proposal = trust.propose(account) if user.is_seller else None
    batches = _recent_batches(account) if user.is_seller else []
    return render_template(
        "admin/user.html",
        user=user,
        account=account,
        proposal=proposal,
        balance=ledger.balance_for(account),
        statement=ledger.statement_for(account, limit=50),
        # At the current level: saving without choosing changes nothing (the proposal
        # is shown beside it, for the admin to pick).
        trust_form=TrustForm(level=account.trust_level.value),
        credit_form=ManualCreditForm(),
        debit_form=ManualDebitForm(),
        payout_form=ManualPayoutForm(paid_on=date.today()),
        manual_payouts=manual_payouts.payouts_for(account) if user.is_seller else [],
        bank_reference=bank_transfers.reference_for(account) if user.is_buyer else None,
        receipts=receipts.receipts_for(account),
        batches=batches,
        # What the seller did with each batch's unsold leads (paused, withdrawn).
        offers=batch_listing.offer_states([b.id for b in batches]),
        history=db.session.scalars(
            select(AuditEvent).where(AuditEvent.subject_type == "user",
                                     AuditEvent.subject_id == user.id)
            .order_by(AuditEvent.id.desc()).limit(50)
        ).all(),
    )


RECENT_BATCHES = 20


def _recent_batches(seller: User) -> list[Batch]:
    """The seller's newest batches, each linked to its review page: a batch whose
    spot-check was decided leaves the queue, and this is the way back to it."""
    return db.session.scalars(select(Batch).where(Batch.seller_id == seller.id)
                              .order_by(Batch.id.desc()).limit(RECENT_BATCHES)).all()


@bp.route("/users/<int:user_id>/trust", methods=["POST"])
def change_trust(user_id: int):
    user = account_or_404(user_id)
    form = TrustForm()
    if form.validate_on_submit():
        try:
            accounts.set_trust_level(user, form.level.data, reason=form.reason.data,
                                     actor=current_user)
            db.session.commit()
            flash(f"{user.email} is now {user.trust_level.value}.", "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    else:
        flash("A trust level and a reason are required.", "danger")
    return redirect(url_for("admin.user_detail", user_id=user.id))


def _manual_movement(user_id: int, form, move, done: str):
    """An admin's manual credit or debit: `move` is the ledger service, `done` the
    confirmation ("Credited {amount} to {email}.")."""
    user = account_or_404(user_id)
    if form.validate_on_submit():
        try:
            move(user, form.amount.minor_units, reason=form.reason.data, actor=current_user)
            db.session.commit()
            flash(done.format(amount=format_money(form.amount.minor_units), email=user.email),
                  "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    else:
        for name, errors in form.errors.items():
            for error in errors:
                flash(f"{getattr(form, name).label.text}: {error}", "danger")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/users/<int:user_id>/credit", methods=["POST"])
def manual_credit(user_id: int):
    return _manual_movement(user_id, ManualCreditForm(), ledger.manual_credit,
                            "Credited {amount} to {email}.")


@bp.route("/users/<int:user_id>/debit", methods=["POST"])
def manual_debit(user_id: int):
    return _manual_movement(user_id, ManualDebitForm(), ledger.manual_debit,
                            "Debited {amount} from {email}.")


@bp.route("/audit")
def audit_log():
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    action = request.args.get("action", "").strip()
    actor = request.args.get("actor", "").strip()
    if action:
        query = query.where(AuditEvent.action.like(f"{action}%"))
    if actor:
        query = query.join(User, AuditEvent.actor_id == User.id).where(
            func.lower(User.email).like(f"%{escape_like(actor.lower())}%", escape="\\"))
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all()
    actions = db.session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    events = rows[:PAGE_SIZE]
    names = accounts.names_of(e.subject_id for e in events if e.subject_type == "user")
    return render_template(
        "admin/audit.html", events=events, has_next=len(rows) > PAGE_SIZE, page=page,
        action=action, actor=actor, actions=list(actions), names=names,
        account_names=audit.account_names(events),
    )

