"""API routes for admins: batches by risk (SPEC §11)."""
import sqlalchemy as sa

from app.api.auth import api_blueprint, api_user
from app.api.schemas import AdminBatchQuerySchema, ApiErrorSchema, BatchSchema
from app.errors import Forbidden
from app.extensions import db
from app.models import Batch, BatchStatus
from app.services import spotchecks

blp = api_blueprint("Admin", __name__, description="Admins: batches ranked by risk")


def mark_admin_view(batches: list[Batch]) -> list[Batch]:
    checks = spotchecks.checks_of([b.id for b in batches])
    for batch in batches:
        batch.admin_view = True
        batch.spot_check_status = spotchecks.status_label(checks.get(batch.id))
    return batches


@blp.route("/admin/batches")
@blp.arguments(AdminBatchQuerySchema, location="query")
@blp.response(200, BatchSchema(many=True))
@blp.alt_response(403, schema=ApiErrorSchema)
def list_batches(query):
    """Every seller's batches, riskiest first (`sort=risk`) or newest first (`sort=newest`);
    each with its risk score, signals and spot-check status."""
    if not api_user().is_admin:
        raise Forbidden("Only admins list every seller's batches.", code="not_an_admin")
    statement = sa.select(Batch)
    if query["status"]:
        statement = statement.where(Batch.status == BatchStatus(query["status"]))
    if query["sort"] == "risk":
        statement = statement.order_by(sa.func.coalesce(Batch.risk_score, -1).desc(),
                                       Batch.id.desc())
    else:
        statement = statement.order_by(Batch.id.desc())
    limit = max(1, min(query["limit"], 500))
    batches = db.session.scalars(statement.limit(limit).offset(max(query["offset"], 0))).all()
    return mark_admin_view(batches)
