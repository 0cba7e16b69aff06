from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.forms import MoneyField
from app.labels import choices
from app.models import TrustLevel


class TrustForm(FlaskForm):
    level = SelectField("Trust level", choices=choices("trust", [t.value for t in TrustLevel]))
    reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("Save trust level")


class ManualCreditForm(FlaskForm):
    amount = MoneyField("Amount", validators=[DataRequired()], positive=True,
                        description="e.g. 250.00")
    reason = TextAreaField(
        "Reason", validators=[DataRequired(), Length(max=500)],
        description="Wire reference or why the credit is due.",
    )
    submit = SubmitField("Credit balance")


class ManualDebitForm(ManualCreditForm):
    reason = TextAreaField(
        "Reason", validators=[DataRequired(), Length(max=500)],
        description="Why the money is taken off (a chargeback settled outside Stripe, a correction).",
    )
    submit = SubmitField("Debit balance")


class BankTransferForm(FlaskForm):
    reference = StringField("Buyer's reference", validators=[DataRequired(), Length(max=60)],
                            description="As the bank statement shows it, e.g. LX-000042-53.")
    amount = MoneyField("Amount received", validators=[DataRequired()], positive=True,
                        description="e.g. 1,250.00")
    received_on = DateField("Received on", validators=[DataRequired()])
    bank_transaction_id = StringField(
        "Bank's transaction id", validators=[DataRequired(), Length(max=100)],
        description="From the bank statement; each bank line is credited once.")
    note = TextAreaField("Note", validators=[Optional(), Length(max=2000)])
    submit = SubmitField("Credit the buyer")


class ManualPayoutForm(FlaskForm):
    amount = MoneyField("Amount sent", validators=[DataRequired()], positive=True,
                        description="e.g. 480.00")
    paid_on = DateField("Sent on", validators=[DataRequired()])
    bank_transaction_id = StringField(
        "Bank's transaction id", validators=[DataRequired(), Length(max=100)],
        description="Of the outgoing transfer; each is recorded once.")
    destination = StringField("Paid to", validators=[Optional(), Length(max=255)],
                              description="The seller's account, e.g. IBAN ending 1234.")
    note = TextAreaField("Note", validators=[Optional(), Length(max=2000)])
    submit = SubmitField("Record payout")
