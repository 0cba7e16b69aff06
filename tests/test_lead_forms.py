"""Hosted lead forms and the exchange's consent certificates (SPEC §14, issue 19)."""
import csv
import hashlib
import hmac
import io
import json
import re

import pytest
import sqlalchemy as sa

from app.aftersale.delivery import engine
from app.consent import builder
from app.extensions import db
from app.models import (
    Batch, ConsentCertificate, Lead, LeadForm, LeadFormVersion, Role, Sale, WebhookDelivery,
)
from app.market import jobs, operations
from app.services import delivery, quality, scoring
from app.services.crypto import current_vault
from tests.conftest import csrf_token, log_in, make_user
from tests.market_helpers import (
    funded_buyer, live_leads, person, place, sales_of, verified_seller)
from tests.receiver import Receiver

BLOG = "http://blog.example.com"  # the test client's host must be a public-looking name
VISITOR = {"REMOTE_ADDR": "203.0.113.77"}
TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')


def make_form(seller, **overrides) -> LeadForm:
    spec = dict(name="Newsletter", fields=[
        {"name": "first_name", "required": True}, {"name": "email", "required": True},
        {"name": "phone", "required": False}, {"name": "age", "required": False}],
        consent_text="I agree that the companies named below may call or email me.",
        disclosed_buyers="Licensed insurance agents\nSolar installers", default_country="US",
        floor_price=0, cap=1, thank_you_message="Thanks, we will be in touch.")
    spec.update(overrides)
    form = builder.create_form(seller, builder.FormSpec(**spec))
    db.session.commit()
    return form


def served_token(client, form, query="") -> str:
    page = client.get(f"/f/{form.public_id}{query}", base_url=BLOG)
    assert page.status_code == 200
    return TOKEN_RE.search(page.get_data(as_text=True)).group(1)


def send(client, form, token=None, *, environ=VISITOR, **fields):
    data = {"first_name": "Jane", "email": "Jane.Doe@Mail.example.com",
            "phone": "+1 415 555 2671", "consent": "yes", "time_on_page_ms": "8400",
            "page_url": "https://blog.example.com/solar?utm_source=x&email=jane@mail.example.com",
            "referrer": "https://search.example.com/?q=solar",
            "inputs": json.dumps({"first_name": "typed", "email": "pasted", "phone": "typed"})}
    data.update(fields)
    data["token"] = token or served_token(client, form)
    return client.post(f"/f/{form.public_id}", data=data, base_url=BLOG, environ_base=environ,
                       headers={"User-Agent": "Mozilla/5.0 (Test) Chromium"})


def certificate_of(lead_id) -> ConsentCertificate:
    return db.session.scalar(sa.select(ConsentCertificate)
                             .where(ConsentCertificate.lead_id == lead_id))


# --- the builder -------------------------------------------------------------------

def _builder_data(client, url, **overrides):
    data = {"csrf_token": csrf_token(client, url), "name": "Solar quotes",
            "consent_text": "I agree to be called about solar panels.",
            "disclosed_buyers": "Solar installers\n", "default_country": "US",
            "floor_price": "2.50", "cap": "2", "thank_you_message": "Thank you!",
            "ask": ["first_name", "phone", "email"], "required": ["phone"]}
    data.update(overrides)
    return data


def test_a_seller_builds_a_form_and_gets_its_link_and_snippet(app, seller, seller_client):
    response = seller_client.post("/seller/forms/new",
                                  data=_builder_data(seller_client, "/seller/forms/new"))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    form = db.session.scalar(sa.select(LeadForm).where(LeadForm.seller_id == seller.id))
    assert (form.floor_price, form.cap, form.default_country) == (250, 2, "US")
    assert form.current.number == 1
    assert form.current.fields == [{"name": "first_name", "required": False},
                                   {"name": "email", "required": False},
                                   {"name": "phone", "required": True}]
    page = seller_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"/f/{form.public_id}" in page
    assert f'data-leadx-form="{form.public_id}"' in page and "js/leadx-embed.js" in page
    assert seller_client.get("/seller/forms").get_data(as_text=True).count("Solar quotes") == 1


def test_the_builder_says_what_is_wrong_at_the_fields(seller_client):
    response = seller_client.post("/seller/forms/new", data=_builder_data(
        seller_client, "/seller/forms/new", consent_text=" ", ask=["first_name", "age"],
        thank_you_url="not a page", disclosed_buyers=" \n"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    # The default consent text promises "the companies named below": someone must be.
    assert "Name the buyers or kinds of buyer who may contact them" in page
    assert "Ask for an email address or a phone number" in page
    assert "Write the consent text" in page
    assert "is not a web address" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LeadForm)) == 0


def test_another_seller_cannot_open_or_edit_the_form(app):
    owner = make_user(Role.SELLER)
    form = make_form(owner)
    other = app.test_client()
    log_in(other, make_user(Role.SELLER))
    assert other.get(f"/seller/forms/{form.id}").status_code == 404
    buyer = app.test_client()
    log_in(buyer, make_user(Role.BUYER))
    assert buyer.get("/seller/forms").status_code == 403


def test_editing_what_the_person_reads_makes_a_new_version_and_nothing_else_does(
        client, seller, seller_client):
    form = make_form(seller)
    url = f"/seller/forms/{form.id}"
    token_v1 = served_token(client, form)  # a visitor opened version 1 ...
    assert seller_client.post(url, data=_builder_data(
        seller_client, url, consent_text="New words: I agree to calls.",
        ask=["first_name", "email", "phone", "age"], required=["first_name", "email"],
    )).status_code == 302
    db.session.expire_all()
    assert [v.number for v in form.versions] == [1, 2]
    assert seller_client.post(url, data=_builder_data(
        seller_client, url, consent_text="New words: I agree to calls.", floor_price="9",
        ask=["first_name", "email", "phone", "age"], required=["first_name", "email"],
    )).status_code == 302
    db.session.expire_all()
    assert [v.number for v in form.versions] == [1, 2] and form.floor_price == 900
    # ... and sends it after the edits: its certificate names what it showed.
    response = send(client, form, token_v1)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    assert certificate.version.number == 1
    public = client.get(f"/api/v1/certificates/{certificate.public_id}").json
    assert public["form_version"] == 1
    assert public["consent_text"].startswith("I agree that the companies named below")
    # A new visitor sees version 2.
    assert "New words: I agree to calls." in client.get(f"/f/{form.public_id}").get_data(
        as_text=True)


# --- a submission becomes a lead, sold at once, with its certificate -----------------

def test_a_submission_is_sold_at_once_with_a_certificate_the_buyer_can_check(
        client, api_key_for):
    seller = verified_seller()
    form = make_form(seller)
    buyer = funded_buyer()
    order = place(buyer, 700, 5)
    response = send(client, form)
    assert response.status_code == 200
    assert "Thanks, we will be in touch." in response.get_data(as_text=True)

    lead = db.session.scalar(sa.select(Lead))
    assert lead.seller_id == seller.id and lead.consent_text.startswith("I agree that")
    assert "Licensed insurance agents; Solar installers" in lead.consent_text
    assert lead.source_url.startswith("https://blog.example.com/solar")
    assert lead.sub_id == f"form {form.public_id}"
    assert db.session.get(Batch, lead.batch_id).source.value == "api"  # the real-time path
    # Scored up: the same person's own points plus the certificate's.
    plain = scoring.lead_points(has_phone=True, has_email=True, age=None, gender="unknown",
                                region=None, interests=[], marital_status="unknown",
                                employed="unknown")
    assert lead.score_base == plain + scoring.CERTIFICATE_POINTS
    [sale] = sales_of(order)
    assert sale.lead_id == lead.id and sale.price == 700

    certificate = certificate_of(lead.id)
    assert certificate.inputs == {"first_name": "typed", "email": "pasted", "phone": "typed"}
    assert certificate.time_on_page_ms == 8400 and certificate.user_agent.endswith("Chromium")
    assert certificate.referrer == "https://search.example.com/?q=solar"

    # The buyer recomputes the hash from what was delivered and the key given to them.
    headers = api_key_for(buyer)
    [delivered] = client.get(f"/api/v1/orders/{order.id}/leads", headers=headers).json
    assert delivered["lead"]["ip"] == "203.0.113.77"
    mine = client.get(f"/api/v1/certificates/{certificate.public_id}", headers=headers).json
    email, phone = delivered["lead"]["email"], delivered["lead"]["phone"]
    assert (email, phone) == ("jane.doe@mail.example.com", "+14155552671")
    recomputed = hmac.new(bytes.fromhex(mine["key"]), f"{email}\n{phone}".encode(),
                          hashlib.sha256).hexdigest()
    assert recomputed == mine["contact_hash"] == certificate.contact_hash
    assert mine["contact_hash_matches"] is True and mine["lead_id"] == lead.id
    # Another person's contacts do not match it.
    assert hmac.new(bytes.fromhex(mine["key"]), f"{email}\n+14155552672".encode(),
                    hashlib.sha256).hexdigest() != mine["contact_hash"]

    # The buyer opens it from the journey (API and page) and from the work list.
    journey = client.get(f"/api/v1/leads/{lead.id}/journey", headers=headers).json
    assert journey[0]["certificate"] == certificate.public_id
    web = client.application.test_client()
    log_in(web, buyer)
    assert f"/certificates/{certificate.public_id}" in web.get(
        f"/buyer/leads/{lead.id}/journey").get_data(as_text=True)
    assert f"/certificates/{certificate.public_id}" in web.get(
        f"/buyer/orders/{order.id}").get_data(as_text=True)
    page = web.get(f"/certificates/{certificate.public_id}").get_data(as_text=True)
    assert "The contact hash matches the email and phone delivered with the lead." in page
    assert mine["key"] in page


def test_the_certificate_link_travels_with_the_lead_and_only_with_a_form_lead(client):
    """Webhook and CSV export carry the link to what the person saw (SPEC §14); a lead
    uploaded in a file has no exchange certificate, so none."""
    receiver = Receiver()
    try:
        seller = verified_seller()
        form = make_form(seller)
        buyer = funded_buyer()
        order = place(buyer, 700, 5)
        operations.set_webhook(order, receiver.url)
        db.session.commit()
        assert send(client, form).status_code == 200
        live_leads(seller, [person(1)])
        jobs.fill_order(order.id)
        db.session.commit()
        for delivery_id in db.session.scalars(sa.select(WebhookDelivery.id)
                                              .where(WebhookDelivery.status != "delivered")):
            engine.deliver(delivery_id)
        public_id = certificate_of(db.session.scalar(
            sa.select(Lead.id).where(Lead.sub_id == f"form {form.public_id}"))).public_id
        sent = {json.loads(r["body"])["lead"]["sub_id"]: json.loads(r["body"])["lead"]
                for r in receiver.requests}
        assert len(sent) == 2
        link = sent[f"form {form.public_id}"]["consent_certificate_url"]
        assert link.endswith(f"/certificates/{public_id}") and link.startswith("http")
        [uploaded] = [lead for tag, lead in sent.items() if tag != f"form {form.public_id}"]
        assert uploaded["consent_certificate_url"] is None
        rows = list(csv.DictReader(io.StringIO("".join(delivery.delivered_csv(order)))))
        assert sorted(row["consent_certificate_url"] for row in rows) == ["", link]
    finally:
        receiver.close()


def test_the_public_pages_name_an_icon_that_is_served(client):
    """Without one the browser asks for /favicon.ico, a 404 in every visitor's console."""
    form = make_form(verified_seller())
    send(client, form)
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    for path in (f"/f/{form.public_id}", f"/f/{form.public_id}?embed=1",
                 f"/certificates/{certificate.public_id}"):
        html = client.get(path, base_url=BLOG).get_data(as_text=True)
        [icon] = re.findall(r'<link rel="icon" href="([^"]+)"', html)
        assert client.get(icon).status_code == 200


def test_the_public_certificate_shows_nothing_of_the_person(client, api_key_for):
    seller = verified_seller()
    form = make_form(seller, fields=[
        {"name": "first_name", "required": True}, {"name": "last_name", "required": False},
        {"name": "email", "required": True}, {"name": "phone", "required": False}])
    send(client, form, last_name="Quimbyson")
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    public = client.get(f"/api/v1/certificates/{certificate.public_id}")
    page = client.get(f"/certificates/{certificate.public_id}")
    assert public.status_code == page.status_code == 200
    assert "key" not in public.json and "lead_id" not in public.json
    assert public.json["page_url"] == "https://blog.example.com/solar"  # no query
    assert public.json["consent_text"] == form.current.consent_text
    assert public.json["disclosed_buyers"] == ["Licensed insurance agents", "Solar installers"]
    assert public.json["contact_hash"] == certificate.contact_hash
    html = page.get_data(as_text=True)
    assert certificate.contact_hash in html and form.current.consent_text in html
    for body in (json.dumps(public.json), html):
        low = body.lower()
        # (digits checked as the whole number: random ids and hashes hold short runs)
        for secret in ("jane", "quimbyson", "mail.example.com", "4155552671", "415 555",
                       "203.0.113.77", "utm_source"):
            assert secret not in low, secret
    # Another buyer, who did not buy it, gets the public view only.
    other = api_key_for(make_user(Role.BUYER))
    assert "key" not in client.get(f"/api/v1/certificates/{certificate.public_id}",
                                   headers=other).json
    assert client.get("/api/v1/certificates/nope").status_code == 404
    spec = client.get("/api/v1/openapi.json").json
    assert spec["paths"]["/api/v1/certificates/{public_id}"]["get"]["security"] == []


# --- what the visitor is told --------------------------------------------------------

def test_invalid_answers_come_back_as_sentences_next_to_their_fields(client):
    form = make_form(verified_seller())
    response = send(client, form, email="jane@", phone="12", age="12")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    email_error = re.search(r'id="lx-email-error">([^<]+)<', html).group(1)
    assert "“jane@” is not an email address we can use" in email_error
    assert "“12” is not a phone number we can use" in re.search(
        r'id="lx-phone-error">([^<]+)<', html).group(1)
    assert "between 18 and 100" in re.search(r'id="lx-age-error">([^<]+)<', html).group(1)
    assert 'value="jane@"' in html  # what they typed stays
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentCertificate)) == 0


def test_consent_must_be_ticked_and_required_fields_given_and_all_is_said_at_once(client):
    form = make_form(verified_seller())
    response = send(client, form, consent="", first_name=" ", phone="12")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Tick the box to agree" in re.search(r'id="lx-consent-error">([^<]+)<', html).group(1)
    assert "Please fill in “First name”" in re.search(
        r'id="lx-first_name-error">([^<]+)<', html).group(1)
    assert "“12” is not a phone number" in re.search(r'id="lx-phone-error">([^<]+)<', html).group(1)
    response = send(client, form, consent="", email="")
    html = response.get_data(as_text=True)
    assert re.search(r'id="lx-email-error">([^<]+)<', html).group(1) == "Please fill in “Email”."
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0


def test_the_same_person_twice_is_told_so(client):
    form = make_form(verified_seller())
    assert send(client, form).status_code == 200
    again = send(client, form)
    assert again.status_code == 422
    assert "You have already sent us these details" in again.get_data(as_text=True)


# --- abuse ---------------------------------------------------------------------------

def test_a_bot_filling_the_hidden_field_is_thanked_and_nothing_is_kept(client):
    form = make_form(verified_seller())
    response = send(client, form, website="http://spam.example.com")
    assert response.status_code == 200 and "Thanks" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0


def test_a_filled_form_cannot_be_replayed_nor_forged(client):
    form = make_form(verified_seller())
    token = served_token(client, form)
    assert send(client, form, token).status_code == 200
    replay = send(client, form, token, email="other@mail.example.com", phone="+14155550199")
    assert replay.status_code == 422 and "already sent" in replay.get_data(as_text=True)
    forged = send(client, form, "made-up-token", email="x@mail.example.com", phone="")
    assert forged.status_code == 422 and "expired" in forged.get_data(as_text=True)
    other_form = make_form(verified_seller())
    crossed = send(client, form, served_token(client, other_form),
                   email="y@mail.example.com", phone="")
    assert crossed.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1


def test_submissions_are_rate_limited_per_address(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "FORM_SUBMIT_RATE_LIMIT_PER_IP", "3 per minute")
    form = make_form(verified_seller())
    here = {"REMOTE_ADDR": "198.51.100.9"}
    codes = [send(client, form, environ=here, email=f"p{i}@mail.example.com",
                  phone=f"+1415555{3000 + i}").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    # Another address is not held back by the first one's count.
    assert send(client, form, email="q@mail.example.com", phone="+14155554000").status_code == 200


def test_the_form_may_be_framed_by_any_site_and_other_pages_may_not(client):
    form = make_form(verified_seller(), thank_you_url="https://thanks.example.org/done")
    page = client.get(f"/f/{form.public_id}?embed=1&page=https%3A%2F%2Fblog.example.com%2Fp")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy and "form-action 'self' https://thanks.example.org" in policy
    assert "X-Frame-Options" not in page.headers and "Set-Cookie" not in page.headers
    assert 'name="page_url" value="https://blog.example.com/p"' in page.get_data(as_text=True)
    assert client.get("/auth/login").headers["X-Frame-Options"] == "DENY"
    # The hosted link goes on to the thank-you page; the embed offers it as a button.
    assert send(client, form).headers["Location"] == "https://thanks.example.org/done"


def test_an_unknown_or_inactive_form_is_not_found(client):
    form = make_form(verified_seller())
    form.active = False
    db.session.commit()
    assert client.get(f"/f/{form.public_id}").status_code == 404
    assert client.get("/f/unknown").status_code == 404


# --- fraud signals -----------------------------------------------------------------------

def test_rushed_fills_and_pasted_contacts_are_fraud_signals_of_the_batch(client):
    form = make_form(verified_seller())
    pasted = json.dumps({"first_name": "typed", "email": "pasted", "phone": "pasted"})
    for i in range(12):
        assert send(client, form, email=f"p{i}@mail.example.com", phone=f"+1415555{3100 + i}",
                    inputs=pasted, environ={"REMOTE_ADDR": f"198.51.100.{i + 1}"}
                    ).status_code == 200
    batch_id = db.session.scalar(sa.select(Lead.batch_id).limit(1))
    signals = {s.code: s for s in quality.assess_batch(batch_id).signals}
    # The test sends each form within a second of fetching it, as a script would.
    assert (signals["rushed_forms"].count, signals["rushed_forms"].of) == (12, 12)
    assert (signals["pasted_contacts"].count, signals["pasted_contacts"].of) == (12, 12)
    assert signals["rushed_forms"].points == quality.RULES["rushed_forms"].weight
    assert signals["pasted_contacts"].points > 0


def test_a_typed_slow_fill_raises_no_form_signal(client):
    form = make_form(verified_seller())
    token = served_token(client, form)
    db.session.execute(sa.update(ConsentCertificate).values(served_ms=0))  # nothing yet
    send(client, form, token, inputs=json.dumps({"email": "typed", "phone": "typed"}))
    db.session.execute(sa.update(ConsentCertificate).values(served_ms=45_000))
    db.session.commit()
    batch_id = db.session.scalar(sa.select(Lead.batch_id).limit(1))
    signals = {s.code: s for s in quality.assess_batch(batch_id).signals}
    assert signals["rushed_forms"].count == 0 and signals["pasted_contacts"].count == 0


def test_batches_without_form_leads_show_no_form_signals():
    from tests.ingest_helpers import csv_bytes, ingest, person

    batch = ingest(verified_seller(), csv_bytes([person(i) for i in range(5)]))
    codes = {s.code for s in quality.assess_batch(batch.id).signals}
    assert not codes & {"rushed_forms", "pasted_contacts"}


@pytest.mark.parametrize("way", ["typed", "pasted", "typed and pasted", "autofilled"])
def test_only_known_input_ways_of_asked_fields_are_kept(client, way):
    form = make_form(verified_seller())
    send(client, form, inputs=json.dumps({"email": way, "phone": "<script>", "ssn": "typed"}))
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    assert certificate.inputs == {"email": way}
    assert current_vault().open_contact(db.session.get(Lead, certificate.lead_id).contact_enc)[
        "ip"] == "203.0.113.77"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LeadFormVersion)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Sale)) == 0


def test_one_served_form_sent_twice_at_once_makes_one_lead(app):
    """Two sends of one token race (a double click, a replaying bot): the one-time token
    holds under concurrency, whichever contacts each carries (on PostgreSQL too)."""
    import threading

    form = make_form(verified_seller())
    # The seller's real-time batch of the day exists already: the race under test is
    # the token's, not the first lead of a day's (a separate matter of that path).
    assert send(app.test_client(), form, email="early@mail.example.com").status_code == 200
    token = served_token(app.test_client(), form)
    form_stub = type("Form", (), {"public_id": form.public_id})
    db.session.commit()  # and nothing read after: SQLite's write lock is the senders'
    barrier, codes = threading.Barrier(2), []

    def post(email):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            codes.append(send(client, form_stub, token, email=email, phone="").status_code)

    threads = [threading.Thread(target=post, args=(f"racer{i}@mail.example.com",))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.rollback()
    assert sorted(codes) == [200, 422]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentCertificate)) == 2


def test_third_party_certificates_reach_the_buyer_in_the_work_list_and_the_journey(
        client, api_key_for):
    """TrustedForm and Jornaya ids a seller sends (shape-checked at ingest) are shown to
    the lead's buyers; a malformed one is refused with its reason."""
    seller = verified_seller()
    buyer = funded_buyer()
    order = place(buyer, 600, 2)
    lead = {"email": "tf.person@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://landing.example.com/offer", "default_country": "US",
            "trustedform_cert_url": "https://cert.trustedform.com/" + "a1" * 20,
            "jornaya_leadid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"}
    seller_key = api_key_for(seller)
    bad = client.post("/api/v1/leads", headers=seller_key,
                      json={**lead, "trustedform_cert_url": "https://example.com/cert"})
    assert bad.status_code == 422 and bad.json["error"]["code"] == "invalid_certificate"
    posted = client.post("/api/v1/leads", headers=seller_key, json=lead)
    assert posted.status_code == 201 and len(posted.json["sales"]) == 1
    [step] = [s for s in client.get(f"/api/v1/leads/{posted.json['id']}/journey",
                                    headers=api_key_for(buyer)).json if s["kind"] == "received"]
    assert step["trustedform_cert_url"] == lead["trustedform_cert_url"]
    assert step["jornaya_leadid"] == "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D"
    assert step["certificate"] is None  # not one of the exchange's forms
    web = client.application.test_client()
    log_in(web, buyer)
    for page in (f"/buyer/orders/{order.id}", f"/buyer/leads/{posted.json['id']}/journey"):
        html = web.get(page).get_data(as_text=True)
        assert lead["trustedform_cert_url"] in html and "0A1B2C3D-4E5F" in html, page
        assert "certificate-link" not in html, page
