"""API routes for the caller's own account: balance."""
from app.api.auth import api_blueprint, api_user
from app.api.schemas import BalanceSchema, ApiErrorSchema
from app.services import ledger

blp = api_blueprint("Account", __name__, description="The caller's account")


@blp.route("/balance")
@blp.response(200, BalanceSchema)
@blp.alt_response(401, schema=ApiErrorSchema, description="Missing or invalid API key")
def get_balance():
    """Balances of the caller in minor units of the exchange's currency."""
    return ledger.balance_for(api_user())
