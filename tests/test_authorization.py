"""Walk every registered route as anonymous, seller, buyer and admin.

Each route must be classified below; a new route that is not fails the first test,
so nobody can add a page without deciding who may open it."""
import re

import pytest

from app.models import Role
from tests.conftest import csrf_token, log_in, make_user

PUBLIC = {"/", "/healthz", "/auth/login", "/auth/signup", "/api/docs", "/api/v1/openapi.json"}
ANY_LOGGED_IN = {"/auth/logout", "/auth/password", "/auth/api-keys",
                 "/auth/api-keys/<int:key_id>/revoke"}
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
    if rule_path in ANY_LOGGED_IN:
        return "logged_in"
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
            elif owner == "logged_in" or owner == role:
                assert status not in (401, 403, 500), where
                if status == 302:
                    assert "/auth/login" not in response.headers["Location"], where
            else:
                assert status == 403, where
