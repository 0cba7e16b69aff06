"""Delivering sold leads into buyers' systems (SPEC §12): `engine` sends and retries,
`webhook` is our signed JSON, `http` the buyer's own format and reply rule."""
