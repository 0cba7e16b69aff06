"""Account routes for every role: sign-up and its emailed verification, log in and
out, name and time zone, password change and reset, and API keys. Two-factor login:
app/auth/two_factor.py."""
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from markupsafe import Markup

from app.auth import bp
from app.auth.forms import (
    ApiKeyForm, ConfirmForm, LoginForm, PasswordChangeForm, ResetPasswordForm, ResetRequestForm,
    ProfileForm, SignUpForm,
)
from app.auth.sessions import await_second_step, safe_next, start_session, user_rate_key
from app.errors import DomainError
from app.extensions import commit_keeping_loaded, db, limiter
from app.formatting import browser_locale
from app.models import ApiKey, LinkPurpose
from app.people import account_links
from app.services import accounts, ledger


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(
                form.email.data, form.password.data, form.role.data, form.display_name.data,
                timezone=accounts.browser_timezone(form.timezone.data),
            )
            user.locale = str(browser_locale())  # what its notices and emails are written in
            ledger.open_accounts_for(user)
            account_links.send_verification(user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = getattr(form, exc.details.get("field", ""), None)
            (field.errors.append(exc.message) if field is not None else flash(exc.message, "danger"))
        else:
            start_session(user, remember=False)
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
            user.locale = str(browser_locale())  # what its notices and emails are written in
            db.session.commit()
            next_url = safe_next(request.args.get("next"))
            if user.two_factor_enabled:
                await_second_step(user, bool(form.remember.data), next_url)
                return redirect(url_for("auth.two_factor_login"))
            start_session(user, remember=form.remember.data)
            return redirect(next_url or url_for("main.index"))
    return render_template("auth/login.html", form=form)


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
            start_session(current_user._get_current_object(), remember=False)
            flash("Password changed. Other devices have been logged out.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/password.html", form=form)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def profile():
    user = current_user._get_current_object()
    form = ProfileForm(obj=user)
    nameable = accounts.may_be_named(user)
    if form.validate_on_submit():
        try:
            accounts.update_profile(user, form.display_name.data or "", form.timezone.data,
                                    form.named_on_forms.data if nameable else None)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            form.timezone.errors.append(exc.message)
        else:
            flash("Saved.", "success")
            return redirect(url_for("auth.profile"))
    return render_template("auth/profile.html", form=form, zones=accounts.timezone_names(),
                           nameable=nameable)


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
        user, now = account_links.verify_email(token)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    else:
        if now:
            flash(f"Thank you: {user.email} is confirmed.", "success")
        elif current_user.is_authenticated:
            flash(f"{user.email} is already confirmed.", "info")
        else:
            flash(Markup('{} is already confirmed: <a class="alert-link" href="{}">log in</a>.')
                  .format(user.email, url_for("auth.login")), "info")
    return redirect(url_for("main.index"))


@bp.route("/verify-email/resend", methods=["POST"])
@login_required
@limiter.limit(lambda: current_app.config["VERIFICATION_RESEND_RATE_LIMIT"],
               key_func=user_rate_key)
def resend_verification():
    if ConfirmForm().validate_on_submit():
        if current_user.email_verified:
            flash("Your address is already confirmed.", "info")
        else:
            account_links.send_verification(current_user)
            db.session.commit()
            flash(f"We sent a new link to {current_user.email}. Earlier links no longer work.",
                  "info")
    return redirect(safe_next(request.form.get("next")) or url_for("main.index"))


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
