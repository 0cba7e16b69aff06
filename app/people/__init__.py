"""People: what the exchange tells its users (notifications, their choices)."""
