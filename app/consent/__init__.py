"""Consent you can prove (SPEC §14), the public blueprint: hosted lead forms at
/f/<public id> and consent certificates at /certificates/<public id>. Its routes live
in routes.py, which imports `bp` from here; the seller's form builder is in
app/seller/lead_forms.py."""
from flask import Blueprint

bp = Blueprint("consent", __name__)
