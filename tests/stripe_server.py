"""localstripe for the tests: the same server `scripts/serve.sh` runs (app/dev), its
store kept in memory."""
from app.dev.localstripe import free_port, register_webhook, start

__all__ = ["free_port", "register_webhook", "start"]
