"""The web route of a lead's journey, shared by the seller, buyer and admin areas (each
adds it to its blueprint, behind its role check): a thin view over
app/aftersale/journeys.py, which decides what the signed-in person may see."""
from typing import Optional

from flask import Blueprint, render_template
from flask_login import current_user

from app.aftersale import journeys


def add_routes(bp: Blueprint, order_endpoint: Optional[str] = None) -> None:
    """`<area>.journey`: /leads/<id>/journey on `bp`; `order_endpoint` is the area's
    page of an order its steps name (the buyer's own), linked from them."""

    def journey(lead_id: int):
        steps = journeys.journey(current_user._get_current_object(), lead_id)
        return render_template("aftersale/journey.html", lead_id=lead_id, steps=steps,
                               order_endpoint=order_endpoint)

    bp.add_url_rule("/leads/<bigid:lead_id>/journey", "journey", journey)
