"""API routes for the opt-outs a buyer must acknowledge (SPEC §14): `GET /opt-outs`,
`POST /opt-outs/acknowledge`."""
from marshmallow import Schema, fields, validate

from app.api.auth import api_blueprint, api_user
from app.api.schemas import Int
from app.core import bounds
from app.extensions import db
from app.models import Role
from app.people import opt_out

blp = api_blueprint("Opt-outs", __name__,
                    description="Buyers: people who opted out, to acknowledge (SPEC §14)")


class OptOutNoticeSchema(Schema):
    sale_id = fields.Integer()
    order_id = fields.Integer()
    created_at = fields.DateTime(metadata={"description": "when the person opted out"})
    due_at = fields.DateTime(metadata={"description": "acknowledge by then (10 business days)"})
    acknowledged_at = fields.DateTime(allow_none=True)


class AcknowledgeSchema(Schema):
    sale_ids = fields.List(Int(bounds.BIG_ID), load_default=None,
                           validate=validate.Length(max=10_000),
                           metadata={"description": "these sales' opt-outs; all open ones "
                                     "when left out"})


class AcknowledgedSchema(Schema):
    acknowledged = fields.Integer()


def _buyer():
    return api_user(Role.BUYER, "Only buyers receive opt-outs.")


@blp.route("/opt-outs", methods=["GET"])
@blp.response(200, OptOutNoticeSchema(many=True))
def list_opt_outs():
    """The opt-outs of people the caller bought, newest first."""
    return opt_out.notices_for(_buyer())


@blp.route("/opt-outs/acknowledge", methods=["POST"])
@blp.arguments(AcknowledgeSchema, location="json", required=False)
@blp.response(200, AcknowledgedSchema)
def acknowledge_opt_outs(data):
    """The caller has stopped contacting these people."""
    done = opt_out.acknowledge(_buyer(), (data or {}).get("sale_ids"))
    db.session.commit()
    return {"acknowledged": done}
