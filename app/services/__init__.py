"""Domain rules. No request, session or current_user here: services flush, callers commit."""
