"""Models, one module per aggregate. Importing this package registers them all."""
from app.models.audit import AuditEvent
from app.models.ledger import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from app.models.users import ApiKey, Role, TrustLevel, User

__all__ = [
    "AccountKind",
    "ApiKey",
    "AuditEvent",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Role",
    "TrustLevel",
    "User",
]
