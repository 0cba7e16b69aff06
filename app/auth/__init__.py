"""Accounts for every role, the blueprint: sign-up, log in/out, password and API keys.
Its routes live in routes.py, which imports `bp` from here; create_app imports it, so
nothing here imports it back."""
from flask import Blueprint

bp = Blueprint("auth", __name__)
