from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from app.formatting import parse_money
from app.models import TrustLevel


class TrustForm(FlaskForm):
    level = SelectField("Trust level", choices=[SelectChoice(t.value) for t in TrustLevel])
    reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("Save trust level")


class ManualCreditForm(FlaskForm):
    amount = StringField("Amount", validators=[DataRequired()], description="e.g. 250.00")
    reason = TextAreaField(
        "Reason", validators=[DataRequired(), Length(max=500)],
        description="Wire reference or why the credit is due.",
    )
    submit = SubmitField("Credit balance")

    def validate_amount(self, field):
        try:
            field.minor_units = parse_money(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc))
        if field.minor_units <= 0:
            raise ValidationError("The amount must be above zero.")


class ManualDebitForm(ManualCreditForm):
    reason = TextAreaField(
        "Reason", validators=[DataRequired(), Length(max=500)],
        description="Why the money is taken off (a chargeback settled outside Stripe, a correction).",
    )
    submit = SubmitField("Debit balance")
