"""API requests get an empty session without reading the cookie
(app.api.CookieSessionsOutsideApi), and nothing else changes: a signed-in browser's
cookie still does not authenticate an API request, an API answer sets no cookie, and
the web pages outside /api/v1/ keep their sessions."""


def test_a_signed_in_browser_needs_a_key_and_gets_no_cookie_from_the_api(
        seller_client, seller, api_key_for, client):
    refused = seller_client.get("/api/v1/balance")
    assert refused.status_code == 401
    assert "Set-Cookie" not in refused.headers
    answered = seller_client.get("/api/v1/balance", headers=api_key_for(seller))
    assert answered.status_code == 200
    assert "Set-Cookie" not in answered.headers
    # The browser's session is untouched: its pages still know who it is (a browser
    # without one is sent to log in).
    assert seller_client.get("/seller/").status_code == 200
    assert client.get("/seller/").status_code == 302
