"""Two-factor login routes (SPEC §2): the code after the password, enrolment, new
recovery codes, switching it off; and the gate that holds an admin without it on the
enrolment page. The rules are in app/people/two_factor.py."""
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from app.auth import bp
from app.auth.forms import ConfirmForm, TwoFactorChangeForm, TwoFactorForm
from app.auth.sessions import (
    PENDING_LOGIN, pending_rate_key, pending_user, safe_next, start_session, user_rate_key,
)
from app.errors import DomainError
from app.extensions import db, limiter
from app.people import two_factor


@bp.route("/two-factor", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], methods=["POST"],
               key_func=pending_rate_key)
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"], methods=["POST"])
def two_factor_login():
    """The second step of a login: a code from the app or a recovery code."""
    user = pending_user()
    if user is None:
        session.pop(PENDING_LOGIN, None)
        flash("Log in again: the code must follow the password within five minutes.", "info")
        return redirect(url_for("auth.login"))
    form = TwoFactorForm()
    if form.validate_on_submit():
        used = two_factor.verify(user, form.code.data)
        db.session.commit()
        if used is None:
            form.code.errors.append("That code is not right, or was used already. Enter the "
                                    "code your app shows now, or an unused recovery code.")
        else:
            left = two_factor.remaining_recovery_codes(user) if used == "recovery" else None
            pending = session[PENDING_LOGIN]
            start_session(user, remember=pending.get("remember", False))
            if left is not None:
                flash(f"You used a recovery code; {left} left. Make new ones under "
                      "Two-factor login if you are running out.", "warning")
            return redirect(safe_next(pending.get("next")) or url_for("main.index"))
    return render_template("auth/two_factor_login.html", form=form)


# Pages an admin without two-factor login may still open: enrolment and logging out.
ENROLMENT_OPEN = frozenset({"static", "auth.two_factor_setup", "auth.two_factor_start",
                            "auth.logout"})


@bp.before_app_request
def admins_enrol_first():
    """Admins must use two-factor login (SPEC §2): one without it is sent to enrolment
    at their first login and can open nothing else until enrolled."""
    if request.endpoint in ENROLMENT_OPEN or request.path.startswith("/api/"):
        return None  # the API refuses such an admin's keys itself (app/api/auth.py)
    if (current_user.is_authenticated and two_factor.required(current_user)
            and not current_user.two_factor_enabled):
        flash("Administrators sign in with two factors: set up your authenticator app "
              "to continue.", "warning")
        return redirect(url_for("auth.two_factor_setup"))
    return None


@bp.route("/two-factor/setup", methods=["GET", "POST"])
@login_required
def two_factor_setup():
    """Enrolment (scan, confirm with a code) or, once on, its state and changes."""
    user = current_user._get_current_object()
    if user.two_factor_enabled:
        return render_template("auth/two_factor.html", enabled=True,
                               left=two_factor.remaining_recovery_codes(user),
                               required=two_factor.required(user),
                               codes_form=TwoFactorChangeForm(prefix="codes"),
                               disable_form=TwoFactorChangeForm(prefix="off"))
    seed = two_factor.pending_seed(user)
    form = TwoFactorForm()
    if seed is not None and form.validate_on_submit():
        try:
            codes = two_factor.confirm_enrolment(user, form.code.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            form.code.errors.append(exc.message)
        else:
            flash("Two-factor login is on.", "success")
            return render_template("auth/recovery_codes.html", codes=codes)
    uri = two_factor.provisioning_uri(user, seed) if seed else None
    return render_template("auth/two_factor.html", enabled=False, seed=seed, form=form,
                           qr=two_factor.qr_code_svg(uri) if uri else None,
                           required=two_factor.required(user), start_form=ConfirmForm())


@bp.route("/two-factor/start", methods=["POST"])
@login_required
def two_factor_start():
    if ConfirmForm().validate_on_submit() and not current_user.two_factor_enabled:
        two_factor.start_enrolment(current_user)
        db.session.commit()
    return redirect(url_for("auth.two_factor_setup"))


@bp.route("/two-factor/recovery-codes", methods=["POST"])
@login_required
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], key_func=user_rate_key)
def two_factor_recovery_codes():
    form = TwoFactorChangeForm(prefix="codes")
    if form.validate_on_submit():
        try:
            codes = two_factor.replace_recovery_codes(current_user, form.password.data,
                                                      form.code.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            return render_template("auth/recovery_codes.html", codes=codes)
    return redirect(url_for("auth.two_factor_setup"))


@bp.route("/two-factor/disable", methods=["POST"])
@login_required
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], key_func=user_rate_key)
def two_factor_disable():
    form = TwoFactorChangeForm(prefix="off")
    if form.validate_on_submit():
        try:
            two_factor.disable(current_user, form.password.data, form.code.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash("Two-factor login is off: your password alone signs you in.", "info")
    return redirect(url_for("auth.two_factor_setup"))
