"""The public pages, the blueprint. Its routes live in routes.py, which imports `bp`
from here; create_app imports it, so nothing here imports it back."""
from flask import Blueprint

bp = Blueprint("main", __name__)
