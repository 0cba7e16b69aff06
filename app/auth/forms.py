from flask_wtf import FlaskForm
from wtforms import (BooleanField, HiddenField, PasswordField, RadioField, SelectField, StringField,
                     SubmitField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from app.services.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, NAME_REQUIRED

NEW_PASSWORD = {"autocomplete": "new-password", "maxlength": MAX_PASSWORD_LENGTH}


def _password_length() -> Length:
    return Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
                  message=f"Use {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.")


class SignUpForm(FlaskForm):
    role = RadioField(
        "I want to",
        choices=[SelectChoice("buyer", "Buy leads for my business"),
                 SelectChoice("seller", "Sell the leads I collect")],
        default="buyer",
        validators=[DataRequired()],
    )
    display_name = StringField("Name or company",
                               validators=[DataRequired(NAME_REQUIRED), Length(max=120)])
    email = StringField("Email", validators=[DataRequired(), Length(max=254)],
                        render_kw={"autocomplete": "email"})
    password = PasswordField(
        "Password", validators=[DataRequired(), _password_length()],
        description=f"At least {MIN_PASSWORD_LENGTH} characters, not easy to guess: a few "
                    "unrelated words work well.", render_kw=NEW_PASSWORD,
    )
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")],
        render_kw=NEW_PASSWORD,
    )
    # Filled by static/js/timezone.js from the browser; the account page changes it.
    timezone = HiddenField(render_kw={"data-browser-timezone": ""})
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)],
                        render_kw={"autocomplete": "username"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
                             render_kw={"autocomplete": "current-password"})
    remember = BooleanField("Keep me logged in on this device")
    submit = SubmitField("Log in")


class PasswordChangeForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()],
                            render_kw={"autocomplete": "current-password"})
    password = PasswordField("New password", validators=[DataRequired(), _password_length()],
                             render_kw=NEW_PASSWORD)
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", "Passwords differ.")],
        render_kw=NEW_PASSWORD,
    )
    submit = SubmitField("Change password")


class ApiKeyForm(FlaskForm):
    name = StringField("Key name", validators=[DataRequired(), Length(max=80)],
                       description="For example the site or script that will use it.")
    submit = SubmitField("Create key")


class ConfirmForm(FlaskForm):
    """An empty form: a POST button with its CSRF token."""

    submit = SubmitField("Confirm")


class ResetRequestForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)],
                        render_kw={"autocomplete": "email"})
    submit = SubmitField("Email me a link")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), _password_length()],
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.",
                             render_kw=NEW_PASSWORD)
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", "Passwords differ.")],
        render_kw=NEW_PASSWORD,
    )
    submit = SubmitField("Set the new password")


CODE_FIELD = {"autocomplete": "one-time-code", "inputmode": "text", "autocapitalize": "off",
              "spellcheck": "false", "maxlength": 24}


class TwoFactorForm(FlaskForm):
    """The second step of a login, and the code that confirms an enrolment."""

    code = StringField("Code", validators=[DataRequired(), Length(max=24)],
                       description="The 6-digit code your authenticator app shows now, or "
                                   "one of your recovery codes.",
                       render_kw=CODE_FIELD)
    submit = SubmitField("Continue")


class TwoFactorChangeForm(FlaskForm):
    """Password and a current code, before switching off or replacing recovery codes."""

    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
                             render_kw={"autocomplete": "current-password"})
    code = StringField("Code from your app (or a recovery code)",
                       validators=[DataRequired(), Length(max=24)], render_kw=CODE_FIELD)
    submit = SubmitField("Confirm")


class InviteForm(FlaskForm):
    """An owner invites someone into the company; the first invitation also names it."""

    company = StringField("Company name", validators=[Length(max=120)],
                          description="Shown to the people you invite.")
    email = StringField("Email of the person to invite",
                        validators=[DataRequired(), Length(max=254)],
                        render_kw={"autocomplete": "off"})
    role = SelectField("Role", choices=[SelectChoice("member", "Member"), SelectChoice("owner", "Owner")],
                       default="member",
                       description="Members work with the company's orders, batches and "
                                   "balance; owners also invite and remove people.")
    submit = SubmitField("Send the invitation")


class AcceptInvitationForm(FlaskForm):
    display_name = StringField("Your name", validators=[Length(max=120)],
                               render_kw={"autocomplete": "name"})
    password = PasswordField("Choose a password", validators=[DataRequired(), _password_length()],
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.",
                             render_kw=NEW_PASSWORD)
    confirm = PasswordField(
        "Repeat the password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")],
        render_kw=NEW_PASSWORD,
    )
    # As at sign-up: the member's own zone, from their browser.
    timezone = HiddenField(render_kw={"data-browser-timezone": ""})
    submit = SubmitField("Join the company")


class ProfileForm(FlaskForm):
    display_name = StringField("Name or company", validators=[Length(max=120)],
                               render_kw={"autocomplete": "name"})
    timezone = StringField(
        "Time zone", validators=[DataRequired(), Length(max=64)],
        description="Pages show times in it, and new orders count their caps and schedules "
                    "in it, e.g. Europe/Madrid.",
        render_kw={"list": "timezones", "autocomplete": "off", "spellcheck": "false"})
    named_on_forms = BooleanField(
        "Sellers may name my company on their lead forms",
        description="People who agree on such a form agree to be contacted by the buyers it "
                    "names, and its leads are sold to those buyers alone. Shown under your name.")
    submit = SubmitField("Save")
