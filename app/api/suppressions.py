"""API routes for a buyer's suppression list (SPEC §11 additions, §14:
`POST /suppressions`, `GET /suppressions`, and taking people off:
`POST /suppressions/remove`, `DELETE /suppressions`) and, the same way, an admin's national
do-not-call lists (`POST /admin/do-not-call`, `POST /admin/do-not-call/remove`,
`GET /admin/do-not-call`)."""
from flask import request
from marshmallow import Schema, fields, validate

from app.api.auth import api_blueprint, api_user
from app.api.schemas import ApiErrorSchema
from app.errors import ValidationFailed
from app.extensions import db
from app.models import Role
from app.services import do_not_call, suppression_lists

blp = api_blueprint("Suppressions", __name__,
                    description="Buyers: people never to receive (SPEC §14)")

_CONTACTS = validate.Length(max=suppression_lists.MAX_ENTRIES)


class SuppressionInputSchema(Schema):
    phones = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list,
                         validate=_CONTACTS)
    emails = fields.List(fields.String(validate=validate.Length(max=320)), load_default=list,
                         validate=_CONTACTS)
    default_country = fields.String(load_default=None, validate=validate.Length(equal=2),
                                    metadata={"description": "ISO alpha-2: reads phones "
                                              "written without +code"})


class SuppressionAddedSchema(Schema):
    added = fields.Integer(metadata={"description": "people new on the list"})
    invalid = fields.Integer(metadata={"description": "entries that are neither a valid "
                                       "phone nor a valid email: skipped"})


class SuppressionRemovedSchema(Schema):
    removed = fields.Integer(metadata={"description": "people taken off the list"})
    invalid = fields.Integer(metadata={"description": "entries that are neither a valid "
                                       "phone nor a valid email: skipped"})


class SuppressionCountSchema(Schema):
    count = fields.Integer()


def _buyer():
    return api_user(Role.BUYER, "Only buyers keep a suppression list.")


def _contacts(data) -> tuple[list, list, str]:
    """(phones, emails, country) of a JSON body or of a CSV file in the field `file`."""
    upload = request.files.get("file")
    if upload is not None:
        phones, emails = suppression_lists.read_csv(upload.read())
        return phones, emails, request.form.get("default_country")
    if request.is_json:
        return data["phones"], data["emails"], data["default_country"]
    raise ValidationFailed("Send JSON {phones, emails} or a CSV file in the field `file`.",
                           code="no_contacts")


@blp.route("/suppressions", methods=["POST"])
@blp.arguments(SuppressionInputSchema, location="json", required=False)
@blp.response(200, SuppressionAddedSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="Not a CSV, too many entries")
def add_suppressions(data):
    """Add people to the caller's list: JSON `{phones, emails}`, or a CSV file in the
    multipart field `file` (columns named phone/email, or one contact per cell; form
    field `default_country`). Only keyed hashes are kept."""
    buyer = _buyer()
    added = suppression_lists.add(buyer, *_contacts(data))
    db.session.commit()
    return added


@blp.route("/suppressions/remove", methods=["POST"])
@blp.arguments(SuppressionInputSchema, location="json", required=False)
@blp.response(200, SuppressionRemovedSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="Not a CSV, too many entries")
def remove_suppressions(data):
    """Take people off the caller's list, given as `POST /suppressions` takes them: the
    caller's orders may receive them again from now on."""
    buyer = _buyer()
    removed = suppression_lists.remove(buyer, *_contacts(data))
    db.session.commit()
    return removed


@blp.route("/suppressions", methods=["DELETE"])
@blp.response(200, SuppressionRemovedSchema)
def clear_suppressions():
    """Empty the caller's list."""
    removed = suppression_lists.clear(_buyer())
    db.session.commit()
    return {"removed": removed, "invalid": 0}


@blp.route("/suppressions", methods=["GET"])
@blp.response(200, SuppressionCountSchema)
def count_suppressions():
    """How many people are on the caller's list."""
    return {"count": suppression_lists.count(_buyer())}


class DoNotCallInputSchema(Schema):
    country = fields.String(load_default=None, validate=validate.Length(equal=2),
                            metadata={"description": "ISO alpha-2 of the list"})
    phones = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list,
                         validate=validate.Length(max=do_not_call.MAX_ENTRIES))


class DoNotCallLoadedSchema(Schema):
    added = fields.Integer()
    invalid = fields.Integer()
    flagged = fields.Integer(metadata={"description": "leads held already that are on it"})


class DoNotCallRemovedSchema(Schema):
    removed = fields.Integer()
    invalid = fields.Integer()
    restored = fields.Integer(metadata={"description": "leads on offer whose number is on "
                                        "no list now: they have their phone back"})


class DoNotCallCountsSchema(Schema):
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata={"description": "country -> numbers on its list"})


def _admin():
    return api_user(Role.ADMIN, "Only admins load do-not-call lists.")


@blp.route("/admin/do-not-call", methods=["POST"])
@blp.arguments(DoNotCallInputSchema, location="json", required=False)
@blp.response(200, DoNotCallLoadedSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="No country, not a CSV")
def load_do_not_call(data):
    """Add numbers to a country's national do-not-call list: JSON `{country, phones}`, or
    a CSV file in the multipart field `file` with the form field `country`. Phone
    leads on it are never sold for phone contact."""
    admin = _admin()
    loaded = do_not_call.load(*_numbers(data), admin)
    db.session.commit()
    return loaded


@blp.route("/admin/do-not-call/remove", methods=["POST"])
@blp.arguments(DoNotCallInputSchema, location="json", required=False)
@blp.response(200, DoNotCallRemovedSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="No country, not a CSV")
def remove_do_not_call(data):
    """Take numbers off a country's list, given as the load takes them (a refreshed list
    dropped them). Leads on offer whose number is on no list now get their phone back."""
    admin = _admin()
    unlisted = do_not_call.remove(*_numbers(data), admin)
    db.session.commit()
    return unlisted


def _numbers(data) -> tuple[str, list]:
    """(country, phones) of a JSON body or of a CSV file in the field `file`."""
    upload = request.files.get("file")
    if upload is not None:
        return request.form.get("country") or "", suppression_lists.read_csv(upload.read())[0]
    if request.is_json:
        return data["country"] or "", data["phones"]
    raise ValidationFailed("Send JSON {country, phones} or a CSV file in the field `file`.",
                           code="no_contacts")


@blp.route("/admin/do-not-call", methods=["GET"])
@blp.response(200, DoNotCallCountsSchema)
def count_do_not_call():
    """Numbers on each country's list."""
    _admin()
    return {"counts": dict(do_not_call.counts())}
