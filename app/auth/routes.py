"""Account routes for every role: sign-up and its emailed verification, log in (with
its two-factor step) and out, two-factor enrolment, password change and reset, and
API keys."""
import time
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import bp
from app.auth.forms import (
    ApiKeyForm, ConfirmForm, LoginForm, PasswordChangeForm, ResetPasswordForm, ResetRequestForm,
    SignUpForm, TwoFactorChangeForm, TwoFactorForm,
)
from app.errors import DomainError
from app.extensions import commit_keeping_loaded, db, limiter
from app.models import ApiKey, LinkPurpose
from app.people import account_links, two_factor
from app.services import accounts, ledger


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _start_session(user, remember: bool) -> None:
    # A fresh session: nothing planted before login survives into the user's session.
    session.clear()
    login_user(user, remember=remember)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(
                form.email.data, form.password.data, form.role.data, form.display_name.data
            )
            ledger.open_accounts_for(user)
            account_links.send_verification(user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = getattr(form, exc.details.get("field", ""), None)
            (field.errors.append(exc.message) if field is not None else flash(exc.message, "danger"))
        else:
            _start_session(user, remember=False)
            flash(f"Welcome! We emailed a link to {user.email}: follow it to confirm the "
                  "address, then you can trade.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/signup.html", form=form)


def _login_rate_key() -> str:
    email = (request.form.get("email") or "").strip().lower()
    return f"{request.remote_addr}|{email}"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"],
               key_func=_login_rate_key)
# Also per address alone, so guessing across many accounts is slowed too.
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"], methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is None:
            db.session.rollback()
            flash("Wrong email or password.", "danger")
        else:
            db.session.commit()
            next_url = _safe_next(request.args.get("next"))
            if user.two_factor_enabled:
                # Not signed in yet: the session only remembers who passed the password.
                session.clear()
                session[PENDING_LOGIN] = {"id": user.get_id(), "at": int(time.time()),
                                          "remember": bool(form.remember.data), "next": next_url}
                return redirect(url_for("auth.two_factor_login"))
            _start_session(user, remember=form.remember.data)
            return redirect(next_url or url_for("main.index"))
    return render_template("auth/login.html", form=form)


PENDING_LOGIN = "two_factor_pending"
PENDING_SECONDS = 300  # the second step follows the password within five minutes


def _pending_user():
    pending = session.get(PENDING_LOGIN)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    # The id carries the session nonce: a password reset meanwhile voids the step.
    return accounts.load_user_from_session_id(str(pending.get("id", "")))


def _pending_rate_key() -> str:
    pending = session.get(PENDING_LOGIN)
    return f"2fa|{pending.get('id') if isinstance(pending, dict) else request.remote_addr}"


@bp.route("/two-factor", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], methods=["POST"],
               key_func=_pending_rate_key)
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"], methods=["POST"])
def two_factor_login():
    """The second step of a login: a code from the app or a recovery code."""
    user = _pending_user()
    if user is None:
        session.pop(PENDING_LOGIN, None)
        flash("Log in again: the code must follow the password within five minutes.", "info")
        return redirect(url_for("auth.login"))
    form = TwoFactorForm()
    if form.validate_on_submit():
        used = two_factor.verify(user, form.code.data)
        if used is None:
            db.session.rollback()
            form.code.errors.append("That code is not right, or was used already. Enter the "
                                    "code your app shows now, or an unused recovery code.")
        else:
            left = two_factor.remaining_recovery_codes(user) if used == "recovery" else None
            db.session.commit()
            pending = session[PENDING_LOGIN]
            _start_session(user, remember=pending.get("remember", False))
            if left is not None:
                flash(f"You used a recovery code; {left} left. Make new ones under "
                      "Two-factor login if you are running out.", "warning")
            return redirect(_safe_next(pending.get("next")) or url_for("main.index"))
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
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], key_func=lambda: _user_rate_key())
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
@limiter.limit(lambda: current_app.config["TWO_FACTOR_RATE_LIMIT"], key_func=lambda: _user_rate_key())
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


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    if ConfirmForm().validate_on_submit():
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current.data, form.password.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = form.current if exc.code == "wrong_password" else form.password
            field.errors.append(exc.message)
        else:
            # The nonce changed, so the old session id is void: log in again under the new one.
            _start_session(current_user._get_current_object(), remember=False)
            flash("Password changed. Other devices have been logged out.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/password.html", form=form)


@bp.route("/api-keys", methods=["GET", "POST"])
@login_required
def api_keys():
    form = ApiKeyForm()
    new_secret = None
    if form.validate_on_submit():
        _, new_secret = accounts.create_api_key(current_user, form.name.data)
        db.session.commit()
        form = ApiKeyForm(formdata=None)
    keys = db.session.scalars(
        db.select(ApiKey).where(ApiKey.user_id == current_user.id).order_by(ApiKey.id.desc())
    ).all()
    return render_template(
        "auth/api_keys.html", form=form, keys=keys, new_secret=new_secret, revoke_form=ConfirmForm()
    )


@bp.route("/api-keys/<int:key_id>/revoke", methods=["POST"])
@login_required
def revoke_api_key(key_id: int):
    if ConfirmForm().validate_on_submit():
        accounts.revoke_api_key(current_user, key_id)
        db.session.commit()
        flash("The key is revoked; requests using it are now refused.", "info")
    return redirect(url_for("auth.api_keys"))


@bp.route("/verify-email/<token>")
def verify_email(token: str):
    """The link in the sign-up email. Anyone holding it may use it (it proves they
    read the mailbox), signed in or not, on any device."""
    commit_keeping_loaded()  # the link's UPDATE then opens a transaction of its own
    try:
        user = account_links.verify_email(token)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    else:
        flash(f"Thank you: {user.email} is confirmed.", "success")
    return redirect(url_for("main.index"))


def _user_rate_key() -> str:
    return f"user:{current_user.get_id()}" if current_user.is_authenticated else request.remote_addr


@bp.route("/verify-email/resend", methods=["POST"])
@login_required
@limiter.limit(lambda: current_app.config["VERIFICATION_RESEND_RATE_LIMIT"],
               key_func=_user_rate_key)
def resend_verification():
    if ConfirmForm().validate_on_submit():
        if current_user.email_verified:
            flash("Your address is already confirmed.", "info")
        else:
            account_links.send_verification(current_user)
            db.session.commit()
            flash(f"We sent a new link to {current_user.email}. Earlier links no longer work.",
                  "info")
    return redirect(_safe_next(request.form.get("next")) or url_for("main.index"))


def _reset_rate_key() -> str:
    return "reset|" + (request.form.get("email") or "").strip().lower()


@bp.route("/reset-password", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RESET_RATE_LIMIT"], methods=["POST"],
               key_func=_reset_rate_key)
@limiter.limit(lambda: current_app.config["RESET_RATE_LIMIT_PER_IP"], methods=["POST"])
def reset_password():
    form = ResetRequestForm()
    if form.validate_on_submit():
        account_links.request_password_reset(form.email.data)
        db.session.commit()
        minutes = current_app.config["PASSWORD_RESET_MINUTES"]
        # The same answer whether or not the address has an account.
        flash("If an account uses this address, we have emailed it a link to choose a new "
              f"password. The link works once, for {minutes} minutes.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_request.html", form=form)


@bp.route("/reset-password/<token>")
def reset_password_link(token: str):
    """The link in the email: the secret moves into the (signed) session cookie and the
    browser goes on to a page whose address does not carry it, so neither the page's
    Referer nor its later requests repeat it."""
    session["reset_token"] = token
    return redirect(url_for("auth.reset_password_new"))


@bp.route("/reset-password/new", methods=["GET", "POST"])
def reset_password_new():
    token = session.get("reset_token", "")
    try:
        account_links.check(token, LinkPurpose.RESET_PASSWORD)
    except DomainError as exc:
        session.pop("reset_token", None)
        flash(exc.message, "danger")
        return redirect(url_for("auth.reset_password"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            account_links.reset_password(token, form.password.data, ip=request.remote_addr)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.details.get("field") == "password":
                form.password.errors.append(exc.message)
            else:
                session.pop("reset_token", None)
                flash(exc.message, "danger")
                return redirect(url_for("auth.reset_password"))
        else:
            logout_user()
            session.clear()
            flash("Your password is changed and every session of your account is logged "
                  "out. Log in with the new password.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form)
