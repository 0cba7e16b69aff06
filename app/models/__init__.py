"""Models, one module per aggregate. Importing this package registers them all."""
from app.models.audit import AuditEvent
from app.models.leads import (
    Batch,
    BatchSource,
    BatchStatus,
    Lead,
    LeadStatus,
    Rejection,
    SuppressionEntry,
)
from app.models.orders import (
    ACTIVE_ORDER_STATUSES,
    DeliveryStatus,
    ErasureNotice,
    Order,
    OrderStatus,
    PersonClaim,
    PersonListing,
    Sale,
    WebhookDelivery,
)
from app.models.outcomes import OutcomeStatus, SaleOutcome
from app.models.ledger import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from app.models.payments import (
    CardRefund,
    Payout,
    PayoutStatus,
    RefundStatus,
    StripeEvent,
    TopUp,
    TopUpStatus,
    Withdrawal,
)
from app.models.quality import DEFECTS, SpotCheck, SpotCheckItem, SpotCheckStatus, Verdict
from app.models.returns import OPEN_RETURN_STATUSES, Return, ReturnReason, ReturnStatus
from app.models.users import ApiKey, Role, TrustLevel, User

__all__ = [
    "ACTIVE_ORDER_STATUSES",
    "DeliveryStatus",
    "ErasureNotice",
    "Order",
    "OrderStatus",
    "PersonClaim",
    "PersonListing",
    "Sale",
    "WebhookDelivery",
    "OutcomeStatus",
    "SaleOutcome",
    "AccountKind",
    "ApiKey",
    "AuditEvent",
    "Batch",
    "BatchSource",
    "BatchStatus",
    "Lead",
    "LeadStatus",
    "Rejection",
    "SuppressionEntry",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "CardRefund",
    "Payout",
    "PayoutStatus",
    "RefundStatus",
    "StripeEvent",
    "TopUp",
    "TopUpStatus",
    "Withdrawal",
    "OPEN_RETURN_STATUSES",
    "Return",
    "ReturnReason",
    "ReturnStatus",
    "Role",
    "DEFECTS",
    "SpotCheck",
    "SpotCheckItem",
    "SpotCheckStatus",
    "Verdict",
    "TrustLevel",
    "User",
]
