"""Account routes for every role: sign-up, log in/out, password change and API keys."""
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import bp
from app.auth.forms import ApiKeyForm, ConfirmForm, LoginForm, PasswordChangeForm, SignUpForm
from app.errors import DomainError
from app.extensions import db, limiter
from app.models import ApiKey
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
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = getattr(form, exc.details.get("field", ""), None)
            (field.errors.append(exc.message) if field is not None else flash(exc.message, "danger"))
        else:
            _start_session(user, remember=False)
            flash("Welcome! Your account is ready.", "success")
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
            _start_session(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")) or url_for("main.index"))
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
