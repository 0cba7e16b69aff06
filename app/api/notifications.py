"""API routes for the caller's notifications (SPEC §11: `GET /notifications`)."""
from marshmallow import Schema, fields

from app.api.auth import api_blueprint, api_member
from app.api.schemas import ApiErrorSchema, Int, TextInput
from app.core import bounds
from app.core.mail import public_url
from app.models import NotificationKind
from app.people import notification_queries as queries

blp = api_blueprint("Notifications", __name__, description="What the caller was told (SPEC §13)")


class NotificationQuerySchema(TextInput):
    limit = Int(bounds.PAGE_SIZE, maximum=200, load_default=50)
    offset = Int(bounds.OFFSET, load_default=0)
    unread = fields.Boolean(load_default=False, metadata={"description": "only unread ones"})


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.Function(lambda n: n.kind.value, metadata={
        "enum": [k.value for k in NotificationKind]})
    title = fields.String()
    body = fields.String()
    link = fields.Function(lambda n: public_url(n.link) if n.link else None, allow_none=True,
                           metadata={"description": "the page that shows more"})
    data = fields.Dict(metadata={"description": "the figures of the notice, by kind "
                                 "(ids, counts, amounts in minor units); `items` as listed"})
    read = fields.Function(lambda n: n.is_read)
    read_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


@blp.route("/notifications")
@blp.arguments(NotificationQuerySchema, location="query")
@blp.response(200, NotificationSchema(many=True))
@blp.alt_response(401, schema=ApiErrorSchema, description="Missing or invalid API key")
def list_notifications(query):
    """The caller's notifications, newest first, each with `read`."""
    return queries.notifications_for(api_member(), limit=query["limit"], offset=query["offset"],
                                     unread_only=query["unread"])
