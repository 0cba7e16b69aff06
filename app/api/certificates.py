"""API route for consent certificates (SPEC §11 additions: `GET /certificates/{id}`),
public: no API key, and nothing of the person in it (app/consent/certificates.py).
Called with the API key of one of the lead's buyers (or its seller), it also carries
the key that recomputes `contact_hash` from the delivered contacts."""
from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.api.auth import api_member, require_api_key
from app.api.schemas import ApiErrorSchema
from app.consent import certificates
from app.errors import NotFound

blp = Blueprint("Certificates", __name__, description="Consent certificates (public)")


class CertificateSchema(Schema):
    id = fields.String(metadata={"description": "the certificate's public id"})
    consent_text = fields.String(metadata={"description": "the exact consent text shown"})
    disclosed_buyers = fields.List(fields.String(), metadata={
        "description": "the buyers, or kinds of buyer, the form named"})
    form_id = fields.String()
    form_version = fields.Integer(metadata={"description": "the version of the form shown"})
    fields_shown = fields.List(fields.String())
    page_url = fields.String(metadata={"description": "the page the form was on (no query)"})
    referrer = fields.String(allow_none=True)
    created_at = fields.DateTime(metadata={"description": "when the person agreed"})
    user_agent = fields.String()
    time_on_page_ms = fields.Integer(allow_none=True, metadata={
        "description": "as the visitor's browser measured it"})
    served_ms = fields.Integer(metadata={
        "description": "from the form served to the form received, as the exchange saw it"})
    inputs = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "field -> typed, pasted, typed and pasted or autofilled"})
    contact_hash = fields.String(metadata={
        "description": "hex HMAC-SHA256(key, email + \"\\n\" + phone) with the key the "
                       "lead's buyers receive"})
    contact_hash_method = fields.String()
    key = fields.String(metadata={"description": "(the lead's buyers and seller, with their "
                                                 "API key) the hash key, hex"})
    lead_id = fields.Integer(metadata={"description": "(the lead's buyers and seller)"})
    contact_hash_matches = fields.Boolean(allow_none=True, metadata={
        "description": "(the lead's buyers and seller) whether the hash matches the lead's "
                       "contacts; null once the person was erased"})


@blp.route("/<public_id>")
@blp.response(200, CertificateSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such certificate")
@blp.doc(security=[])
def get_certificate(public_id: str):
    """A consent certificate the exchange recorded for a hosted form's lead."""
    found = certificates.find(public_id)
    if found is None:
        raise NotFound("No such certificate.")
    view = certificates.public_view(found)
    if request.headers.get("Authorization"):
        require_api_key()
        party = certificates.for_party(found, api_member())
        if party is not None:
            view.update(key=party["key"], lead_id=party["lead_id"],
                        contact_hash_matches=party["matches"])
    return view
