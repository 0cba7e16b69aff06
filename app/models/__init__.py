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
    Order,
    OrderStatus,
    PersonClaim,
    Sale,
    WebhookDelivery,
)
from app.models.outcomes import OutcomeStatus, SaleOutcome
from app.models.ledger import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from app.models.users import ApiKey, Role, TrustLevel, User

__all__ = [
    "ACTIVE_ORDER_STATUSES",
    "DeliveryStatus",
    "Order",
    "OrderStatus",
    "PersonClaim",
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
    "Role",
    "TrustLevel",
    "User",
]
