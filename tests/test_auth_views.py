import sqlalchemy as sa

from app.extensions import db
from app.models import Role, User
from tests.conftest import TEST_PASSWORD, csrf_token, log_in, make_user


def _sign_up(client, role="buyer", email="new@example.com", password=TEST_PASSWORD, confirm=None,
             timezone=""):
    return client.post("/auth/signup", data={
        "role": role, "display_name": "Acme", "email": email, "password": password,
        "confirm": confirm or password, "csrf_token": csrf_token(client, "/auth/signup"),
        "timezone": timezone,
    })


def test_sign_up_as_buyer_logs_in_and_shows_the_dashboard(client):
    response = _sign_up(client)
    assert response.status_code == 302
    page = client.get("/", follow_redirects=True)
    assert page.request.path == "/buyer/"
    assert "Buyer dashboard" in page.get_data(as_text=True)
    user = db.session.scalar(sa.select(User).where(User.email == "new@example.com"))
    assert user.role is Role.BUYER


def test_sign_up_as_seller_lands_on_the_seller_dashboard(client):
    _sign_up(client, role="seller", email="blog@example.com")
    page = client.get("/", follow_redirects=True)
    assert page.request.path == "/seller/"
    assert "Trust level" in page.get_data(as_text=True)


def test_sign_up_cannot_create_an_admin(client):
    response = _sign_up(client, role="admin")
    assert response.status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_sign_up_errors_are_shown_on_the_form(client):
    make_user(email="taken@example.com")
    body = _sign_up(client, email="taken@example.com").get_data(as_text=True)
    assert "already exists" in body
    body = _sign_up(client, email="x@example.com", confirm="something else!").get_data(as_text=True)
    assert "Passwords differ." in body


def test_sign_up_refuses_an_easy_password_saying_why(client):
    body = _sign_up(client, password="aaaaaaaaaa").get_data(as_text=True)
    assert "too easy to guess" in body and "Repeats like" in body
    body = _sign_up(client, email="acme@example.com",
                    password="acme@example.com").get_data(as_text=True)
    assert "too easy to guess" in body  # the address itself is no password
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    assert _sign_up(client, password="plum tractor sonnet").status_code == 302


def test_sign_up_requires_a_name(client):
    response = client.post("/auth/signup", data={
        "role": "buyer", "display_name": "  ", "email": "nameless@example.com",
        "password": TEST_PASSWORD, "confirm": TEST_PASSWORD,
        "csrf_token": csrf_token(client, "/auth/signup")})
    assert response.status_code == 200
    assert "Give your name or your company&#39;s name" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_forms_without_csrf_token_are_refused(client):
    user = make_user()
    response = client.post("/auth/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 400


def test_wrong_password_is_refused_with_one_message(client):
    user = make_user()
    response = client.post("/auth/login", data={
        "email": user.email, "password": "not the password", "csrf_token": csrf_token(client)})
    assert response.status_code == 200
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/buyer/").status_code == 302


def test_login_starts_a_fresh_session(client):
    user = make_user()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    log_in(client, user)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == user.get_id()


def test_remember_me_sets_a_secure_flagged_cookie(client):
    user = make_user()
    response = log_in(client, user, remember=True)
    cookies = response.headers.getlist("Set-Cookie")
    remember = [c for c in cookies if c.startswith("remember_token=")]
    assert remember and "HttpOnly" in remember[0]
    session_cookie = [c for c in cookies if c.startswith("session=")][0]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def test_next_parameter_cannot_redirect_off_site(client):
    user = make_user()
    response = client.post("/auth/login?next=https://evil.example/x", data={
        "email": user.email, "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/"
    client2 = client.application.test_client()  # a new visitor: the first is logged in
    response = client2.post("/auth/login?next=/buyer/", data={
        "email": user.email, "password": TEST_PASSWORD, "csrf_token": csrf_token(client2)})
    assert response.headers["Location"] == "/buyer/"


def test_logout_needs_post_with_csrf(buyer_client):
    assert buyer_client.get("/auth/logout").status_code == 405
    assert buyer_client.post("/auth/logout").status_code == 400
    token = csrf_token(buyer_client, "/buyer/")
    assert buyer_client.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    assert buyer_client.get("/buyer/").status_code == 302


def test_password_change_signs_out_other_sessions(app, buyer, buyer_client):
    other_device = app.test_client()
    log_in(other_device, buyer)
    response = buyer_client.post("/auth/password", data={
        "current": TEST_PASSWORD, "password": "another long password",
        "confirm": "another long password", "csrf_token": csrf_token(buyer_client, "/auth/password")})
    assert response.status_code == 302
    assert buyer_client.get("/buyer/").status_code == 200
    assert other_device.get("/buyer/").status_code == 302


def test_wrong_current_password_is_reported(buyer_client):
    response = buyer_client.post("/auth/password", data={
        "current": "not my password", "password": "another long password",
        "confirm": "another long password", "csrf_token": csrf_token(buyer_client, "/auth/password")})
    assert "The current password is wrong." in response.get_data(as_text=True)


def test_login_is_rate_limited(app):
    client = app.test_client()
    user = make_user()
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    token = csrf_token(client)
    statuses = [
        client.post("/auth/login", data={"email": user.email, "password": "wrong password",
                                          "csrf_token": token}).status_code
        for _ in range(limit + 1)
    ]
    assert statuses[:limit] == [200] * limit
    assert statuses[limit] == 429
    assert "Too many attempts" in client.post("/auth/login", data={
        "email": user.email, "password": TEST_PASSWORD, "csrf_token": token}).get_data(as_text=True)


def test_api_keys_page_shows_a_new_key_once(buyer_client):
    token = csrf_token(buyer_client, "/auth/api-keys")
    body = buyer_client.post("/auth/api-keys", data={"name": "crm", "csrf_token": token}) \
        .get_data(as_text=True)
    assert "shown only now" in body
    secret = body.split('id="new-api-key">')[1].split("<")[0]
    assert buyer_client.get("/api/v1/balance",
                            headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in buyer_client.get("/auth/api-keys").get_data(as_text=True)


def test_sign_up_takes_the_browser_time_zone_and_falls_back_to_utc(client, app):
    _sign_up(client, email="madrid@example.com", timezone="Europe/Madrid")
    _sign_up(app.test_client(), email="nowhere@example.com", timezone="Mars/Olympus_Mons")
    zones = dict(db.session.execute(sa.select(User.email, User.timezone)).all())
    assert zones == {"madrid@example.com": "Europe/Madrid", "nowhere@example.com": "UTC"}


def test_the_account_page_changes_name_and_time_zone_and_new_orders_default_to_it(client):
    user = make_user(role=Role.BUYER, email="b@example.com")
    log_in(client, user)
    page = client.get("/auth/account").get_data(as_text=True)
    assert '<option value="America/Sao_Paulo">' in page and "US/Eastern" not in page
    token = csrf_token(client, "/auth/account")
    refused = client.post("/auth/account", data={"display_name": "Acme", "timezone": "Europe/Nowhere",
                                                  "csrf_token": token})
    assert "Unknown time zone" in refused.get_data(as_text=True)
    assert db.session.get(User, user.id).timezone == "UTC"
    saved = client.post("/auth/account", data={"display_name": "Acme Leads", "timezone": "Asia/Tokyo",
                                               "csrf_token": token}, follow_redirects=True)
    assert "Saved." in saved.get_data(as_text=True)
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert (stored.display_name, stored.timezone) == ("Acme Leads", "Asia/Tokyo")
    new_order = client.get("/buyer/orders/new").get_data(as_text=True)
    assert 'value="Asia/Tokyo"' in new_order
