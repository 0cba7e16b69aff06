"""The company page (SPEC §2): an owner invites, lists and removes the people who
share the account, and reads who did what (the company's part of the audit log); and
the emailed invitation, where the invitee joins by choosing a password. Thin views over
app/people/companies.py and app/services/audit.py."""
from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from app.auth import bp
from app.auth.forms import AcceptInvitationForm, ConfirmForm, InviteForm
from app.auth.sessions import current_account, start_session
from app.core import bounds
from app.errors import DomainError
from app.extensions import commit_keeping_loaded, db
from app.formatting import browser_locale
from app.people import companies, membership
from app.services import accounts, audit

ACTIVITY_PAGE = 50


def _account_role_check() -> None:
    if current_user.is_admin:
        abort(403)  # administrators are people of the exchange, not of a company


@bp.route("/team", methods=["GET", "POST"])
@login_required
def team():
    _account_role_check()
    account = current_account._get_current_object()
    owner = membership.manages(current_user, account)
    form = InviteForm()
    if request.method == "GET" and account.company_name is None:
        form.company.data = account.display_name  # what they signed up as, "name or company"
    if owner and form.validate_on_submit():
        try:
            if account.company_name is None:
                companies.name_company(account, form.company.data or "")
            invitee = companies.invite(account, form.email.data, form.role.data,
                                       actor=current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = getattr(form, exc.details.get("field", ""), None)
            (field.errors.append(exc.message) if field is not None else flash(exc.message, "danger"))
        else:
            flash(f"Invitation sent to {invitee.email}.", "success")
            return redirect(url_for("auth.team"))
    return render_template("auth/team.html", account=account, people=membership.people(account),
                           owner=owner, form=form, remove_form=ConfirmForm())


@bp.route("/team/activity")
@login_required
def team_activity():
    """Who did what with the account: its owners' view of the audit log."""
    _account_role_check()
    account = current_account._get_current_object()
    if not membership.manages(current_user, account):
        abort(403)
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    rows = audit.company_activity(account, limit=ACTIVITY_PAGE + 1,
                                  offset=(page - 1) * ACTIVITY_PAGE)
    events = rows[:ACTIVITY_PAGE]
    return render_template(
        "auth/team_activity.html", account=account, events=events, page=page,
        has_next=len(rows) > ACTIVITY_PAGE,
        account_names=audit.account_names(events),
        names=accounts.names_of(e.subject_id for e in events if e.subject_type == "user"))


@bp.route("/team/<int:user_id>/remove", methods=["POST"])
@login_required
def remove_member(user_id: int):
    _account_role_check()
    if ConfirmForm().validate_on_submit():
        try:
            removed = companies.remove(current_account._get_current_object(), user_id,
                                       actor=current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status == 404:
                abort(404)
            flash(exc.message, "danger")
        else:
            flash(f"{removed.email} no longer has access: their sessions and API keys "
                  "stopped working.", "info")
    return redirect(url_for("auth.team"))


@bp.route("/invitation/<token>")
def invitation_link(token: str):
    """The link in the email: as for a password reset, the secret moves into the
    (signed) session cookie, so the page's address does not carry it."""
    session["invitation_token"] = token
    return redirect(url_for("auth.accept_invitation"))


@bp.route("/invitation/accept", methods=["GET", "POST"])
def accept_invitation():
    token = session.get("invitation_token", "")
    try:
        invitee = companies.invitation(token)
    except DomainError as exc:
        session.pop("invitation_token", None)
        flash(exc.message, "danger")
        return redirect(url_for("auth.login"))
    company = membership.account_of(invitee).company_name
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        commit_keeping_loaded()  # the link's UPDATE then opens a transaction of its own
        try:
            user = companies.accept(token, form.password.data, form.display_name.data,
                                    timezone=accounts.browser_timezone(form.timezone.data))
            user.locale = str(browser_locale())  # what its notices and emails are written in
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.details.get("field") == "password":
                form.password.errors.append(exc.message)
            else:
                session.pop("invitation_token", None)
                flash(exc.message, "danger")
                return redirect(url_for("auth.login"))
        else:
            logout_user()
            start_session(user, remember=False)
            flash(f"Welcome to {company}.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/accept_invitation.html", form=form, invitee=invitee,
                           company=company)
