"""Stripe's webhook, the blueprint (no prefix, no login: Stripe signs its requests).
Its route lives in routes.py, which imports `bp` from here; create_app imports it, so
nothing here imports it back."""
from flask import Blueprint

bp = Blueprint("stripe_webhook", __name__)
