"""No URL the app generates carries a CSRF token or a secret (issue 17): URLs end up
in access logs, browser history and Referer headers. Every page a buyer, a seller and
an admin can reach by links is read, and in each: every URL in an attribute (links,
forms, htmx), every GET form (its fields become the URL's query) and every htmx GET
that includes other fields, plus every redirect's Location."""
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from app.extensions import db
from app.market import jobs
from app.models import Role
from app.services import accounts
from tests.conftest import log_in, make_user
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller

URL_ATTRIBUTES = ("href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put",
                  "hx-patch", "hx-delete", "data-url")
SECRET_FIELDS = ("csrf_token", "password", "webhook_url", "secret", "token")
WEBHOOK = "https://crm.example.com/hook?token=s3cret-webhook-token"
MAX_PAGES = 60


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.forms: list[dict] = []  # {"id", "method", "fields"}
        self.htmx_gets: list[tuple[str, str]] = []  # (url, hx-include)
        self.csrf_values: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[name] for name in URL_ATTRIBUTES if attrs.get(name)]
        if tag == "form":
            self.forms.append({"id": attrs.get("id"), "fields": [],
                               "method": (attrs.get("method") or "get").lower()})
        if tag in ("input", "select", "textarea") and attrs.get("name"):
            if attrs["name"] == "csrf_token" and attrs.get("value"):
                self.csrf_values.add(attrs["value"])
            if self.forms:
                self.forms[-1]["fields"].append(attrs["name"])
        if attrs.get("hx-get") and attrs.get("hx-include"):
            self.htmx_gets.append((attrs["hx-get"], attrs["hx-include"]))


def _secret_fields(fields: list[str]) -> list[str]:
    return [f for f in fields if any(word in f.lower() for word in SECRET_FIELDS)]


def _problems(url: str, html: str, secrets: list[str]) -> list[str]:
    page = _Page()
    page.feed(html)
    found = []
    for link in page.urls:
        for secret in [*secrets, *page.csrf_values, "csrf_token="]:
            if secret in link:
                found.append(f"{url}: a URL carries {secret[:12]}…: {link[:120]}")
    for form in page.forms:
        if form["method"] == "get" and _secret_fields(form["fields"]):
            found.append(f"{url}: GET form {form['id']} sends {_secret_fields(form['fields'])} "
                         "in its URL")
    by_id = {form["id"]: form for form in page.forms if form["id"]}
    for target, include in page.htmx_gets:
        for selector in include.split(","):
            form = by_id.get(selector.strip().lstrip("#"))
            if form and _secret_fields(form["fields"]):
                found.append(f"{url}: hx-get {target} puts {_secret_fields(form['fields'])} "
                             "of the form it includes in its URL")
    return found


def _crawl(client, start: str, secrets: list[str]) -> tuple[int, list[str]]:
    seen, queue, problems = set(), [start], []
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        location = response.headers.get("Location", "")
        problems += [f"{url}: redirect to {location}" for s in [*secrets, "csrf_token="]
                     if s in location]
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        problems += _problems(url, html, secrets)
        page = _Page()
        page.feed(html)
        for link in page.urls:
            parts = urlsplit(urljoin(url, link))
            if (parts.netloc in ("", "localhost") and parts.path.startswith("/")
                    and not parts.path.startswith(("/static/", "/auth/logout"))
                    and not parts.path.endswith((".csv", ".pdf", ".json", ".xlsx"))):
                queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return len(seen), problems


def _market():
    buyer = funded_buyer(email="urls-buyer@example.com")
    live_leads(verified_seller(), [person(i) for i in range(1, 4)])
    order = place(buyer, 100, 3)
    jobs.fill_order(order.id)
    order.webhook_url = WEBHOOK
    db.session.commit()
    return buyer, order


def test_no_page_puts_a_csrf_token_or_a_secret_in_a_url(app):
    buyer, order = _market()
    _, api_key = accounts.create_api_key(buyer, "crm")
    db.session.commit()
    secrets = ["s3cret-webhook-token", api_key]
    problems, pages = [], 0
    for user, start in ((buyer, "/buyer/"), (verified_seller(), "/seller/"),
                        (make_user(Role.ADMIN), "/admin/")):
        client = app.test_client()
        log_in(client, user)
        crawled, found = _crawl(client, start, secrets)
        pages += crawled
        problems += found
    assert pages > 20  # the crawl reached the pages, not a login redirect
    assert problems == []


def test_the_order_builder_estimate_is_not_a_get_with_the_form(app):
    """The issue's case: the estimate included the builder's CSRF token and webhook URL
    (with its ?token=) in a GET's query string."""
    buyer = funded_buyer()
    client = app.test_client()
    log_in(client, buyer)
    html = client.get("/buyer/orders/new").get_data(as_text=True)
    assert _problems("/buyer/orders/new", html, ["s3cret-webhook-token"]) == []
    assert 'hx-post="/buyer/orders/estimate"' in html
    assert client.get("/buyer/orders/estimate?csrf_token=x&webhook_url=y").status_code == 405
    # The checker itself sees the old shape.
    old = ('<form id="order-form" method="post"><input name="csrf_token" value="abc">'
           '<input name="webhook_url"><div hx-get="/buyer/orders/estimate" '
           'hx-include="#order-form"></div></form>')
    assert len(_problems("/buyer/orders/new", old, [])) == 1
