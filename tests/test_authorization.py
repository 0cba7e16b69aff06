"""Walk every registered route as anonymous, seller, buyer and admin.

Each route must be classified below; a new route that is not fails the first test,
so nobody can add a page without deciding who may open it."""
import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Lead, LeadStatus, Role
from tests.conftest import csrf_token, log_in, make_user
from tests.market_helpers import live_leads, person, verified_seller

PUBLIC = {"/", "/healthz", "/auth/login", "/auth/signup", "/api/docs", "/api/v1/openapi.json",
          # Emailed one-time links: whoever holds the link may use it (SPEC §2).
          "/auth/verify-email/<token>", "/auth/reset-password", "/auth/reset-password/<token>",
          "/auth/reset-password/new", "/auth/two-factor",
          "/auth/invitation/<token>", "/auth/invitation/accept",
          # A person's opt-out (SPEC §14): anyone, and whoever holds its emailed link.
          "/opt-out", "/opt-out/<token>", "/opt-out/confirm",
          # Hosted lead forms and consent certificates (SPEC §14): anyone may open them.
          "/f/<public_id>", "/certificates/<public_id>", "/api/v1/certificates/<public_id>"}
ANY_LOGGED_IN = {"/auth/logout", "/auth/account", "/auth/password", "/auth/api-keys",
                 "/auth/api-keys/<int:key_id>/revoke", "/auth/verify-email/resend",
                 "/auth/two-factor/setup", "/auth/two-factor/start",
                 "/auth/two-factor/recovery-codes", "/auth/two-factor/disable"}
ANY_LOGGED_IN_AREAS = ("/notifications/",)  # every role has notifications
# A seller's or buyer's company: administrators have none.
COMPANY = {"/auth/team", "/auth/team/<int:user_id>/remove", "/auth/team/activity"}
# Authenticated by the caller's signature, not a session: unsigned requests get 400.
SIGNED = {"/stripe/webhook"}
AREA_ROLES = {"/seller": Role.SELLER, "/buyer": Role.BUYER, "/admin": Role.ADMIN}
API_PREFIX = "/api/v1/"
ROLES = [None, Role.SELLER, Role.BUYER, Role.ADMIN]


def _rules(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint != "static"]


def _owner(rule_path: str):
    """Who may use this route: 'public', 'logged_in', 'api', or a Role."""
    if rule_path in PUBLIC:
        return "public"
    if rule_path in ANY_LOGGED_IN or rule_path.startswith(ANY_LOGGED_IN_AREAS):
        return "logged_in"
    if rule_path in COMPANY:
        return "company"
    if rule_path in SIGNED:
        return "signed"
    if rule_path.startswith(API_PREFIX):
        return "api"
    for prefix, role in AREA_ROLES.items():
        if rule_path == prefix + "/" or rule_path.startswith(prefix + "/"):
            return role
    return None


def test_every_route_is_classified(app):
    unclassified = [r.rule for r in _rules(app) if _owner(r.rule) is None]
    assert unclassified == []


def _concrete(path: str, ids: dict) -> str:
    path = re.sub(r"<any\((\w+)[^)]*\):\w+>", lambda m: m.group(1), path)  # first choice
    return re.sub(r"<(?:(?:int|bigid):)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), path)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value if r else "anonymous")
def test_role_checks_on_every_route(app, role):
    people = {r: make_user(r) for r in Role}
    client = app.test_client()
    if role:
        log_in(client, people[role])
    token = csrf_token(client, "/auth/password" if role else "/auth/login")
    ids = {"user_id": people[Role.SELLER].id}
    for rule in _rules(app):
        if role and rule.rule == "/auth/logout":
            continue  # would end the walk's session; tests/test_auth_views.py covers it
        owner = _owner(rule.rule)
        url = _concrete(rule.rule, ids)
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            status = response.status_code
            where = f"{method} {url} as {role}"
            if owner == "public":
                assert status < 500 and status not in (401, 403), where
            elif owner == "signed":
                assert status == 400, where
            elif owner == "api":
                assert status == 401, where  # the API takes bearer keys, never the cookie
                assert response.json["error"]["code"] == "unauthorized", where
            elif role is None:
                assert status == 302 and "/auth/login" in response.headers["Location"], where
            elif owner == "logged_in" or owner == role or (
                    owner == "company" and role is not Role.ADMIN):
                assert status not in (401, 403, 500), where
                if status == 302:
                    assert "/auth/login" not in response.headers["Location"], where
            else:
                assert status == 403, where


def _batch_status(batch_id: int) -> LeadStatus:
    db.session.expire_all()
    return db.session.scalar(sa.select(Lead.status).where(Lead.batch_id == batch_id))


def test_a_batch_is_managed_by_its_seller_alone_on_the_web(app):
    """Pause, resume, withdraw and re-price (SPEC §3): another seller gets a 404."""
    batch_id = live_leads(verified_seller(), [person(1)])[0].batch_id
    client = app.test_client()
    log_in(client, verified_seller())
    token = csrf_token(client, "/seller/batches")
    for action in ("pause", "resume", "withdraw", "terms"):
        assert client.post(f"/seller/batches/{batch_id}/{action}",
                           data={"csrf_token": token, "floor_price": "1", "cap": "1"}
                           ).status_code == 404, action
    assert _batch_status(batch_id) is LeadStatus.LIVE


def test_a_batch_is_managed_through_the_api_by_its_seller_or_an_admin(app, api_key_for):
    batch_id = live_leads(verified_seller(), [person(1)])[0].batch_id
    client = app.test_client()
    for user in (verified_seller(), make_user(Role.BUYER)):
        headers = api_key_for(user)
        for action in ("pause", "resume", "withdraw"):
            assert client.post(f"/api/v1/batches/{batch_id}/{action}",
                               headers=headers).status_code == 404, action
        assert client.patch(f"/api/v1/batches/{batch_id}", json={"cap": 2},
                            headers=headers).status_code == 404
    assert client.patch(f"/api/v1/batches/{batch_id}", json={"cap": 2}).status_code == 401
    assert _batch_status(batch_id) is LeadStatus.LIVE
    admin = api_key_for(make_user(Role.ADMIN))
    assert client.post(f"/api/v1/batches/{batch_id}/pause", headers=admin).status_code == 200
    assert _batch_status(batch_id) is LeadStatus.PAUSED
