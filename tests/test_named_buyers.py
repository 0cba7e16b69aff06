"""Forms that name their buyers (SPEC §14): the person agrees to be contacted by the
buyers named, so the form's leads are sold to those buyers alone, by every path that
sells (a lead matched on arrival, an order filling from inventory), and the estimate
of any other buyer does not count them."""
import sqlalchemy as sa

from app.consent import builder
from app.errors import ValidationFailed
from app.extensions import db
from app.market import jobs, queries
from app.market.filters import Filters
from app.models import Lead, LeadForm, User
from tests.conftest import csrf_token, log_in, make_user
from tests.market_helpers import funded_buyer, place, sales_of, verified_seller
from tests.test_lead_forms import make_form, send


def named_buyer(name: str) -> User:
    buyer = funded_buyer(display_name=name)
    buyer.named_on_forms = True
    db.session.commit()
    return buyer


def test_a_form_that_names_a_buyer_sells_its_lead_to_that_buyer_alone(client):
    seller = verified_seller()
    acme = named_buyer("Acme Insurance")
    other = funded_buyer()
    richer = place(other, 900, 5)  # pays more, but the person never agreed to them
    acme_order = place(acme, 500, 5)
    form = make_form(seller, disclosed_buyers="", named_buyers=(acme.id,))

    assert send(client, form).status_code == 200
    lead = db.session.scalar(sa.select(Lead))
    assert lead.consent_scope_id == form.current.id
    assert lead.consent_text.endswith("Who may contact you: Acme Insurance")
    assert [s.lead_id for s in sales_of(acme_order)] == [lead.id]
    assert sales_of(richer) == []
    # What the person saw is what the certificate shows.
    page = client.get(f"/f/{form.public_id}", base_url="http://blog.example.com")
    assert "Acme Insurance" in page.get_data(as_text=True)


def test_orders_filling_later_and_estimates_go_by_the_names_too(client):
    seller = verified_seller()
    acme = named_buyer("Acme Insurance")
    other = funded_buyer()
    form = make_form(seller, disclosed_buyers="", named_buyers=(acme.id,))
    described = make_form(seller, name="Open")  # kinds of buyer: anyone may buy
    assert send(client, form).status_code == 200
    assert send(client, described, email="other.person@mail.example.com",
                phone="+1 415 555 2672").status_code == 200
    named_lead, open_lead = db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()

    assert queries.estimate(Filters.parse({}), buyer=other).matching == 1
    assert queries.estimate(Filters.parse({}), buyer=acme).matching == 2
    their = place(other, 900, 5)
    jobs.fill_order(their.id)
    assert [s.lead_id for s in sales_of(their)] == [open_lead.id]
    acme_order = place(acme, 500, 5)
    jobs.fill_order(acme_order.id)
    assert [s.lead_id for s in sales_of(acme_order)] == [named_lead.id]


def test_only_buyers_who_allow_it_can_be_named_and_names_make_versions():
    seller = verified_seller()
    shy = funded_buyer(display_name="Shy Buyer")
    acme = named_buyer("Acme Insurance")
    zenith = named_buyer("Zenith Solar")
    try:
        make_form(seller, disclosed_buyers="", named_buyers=(shy.id,))
    except ValidationFailed as exc:
        assert "no longer let sellers name them" in exc.message
    else:
        raise AssertionError("a buyer who did not allow it was named")
    db.session.rollback()
    assert [b.name for b in builder.nameable_buyers()] == ["Acme Insurance", "Zenith Solar"]

    form = make_form(seller, disclosed_buyers="", named_buyers=(zenith.id, acme.id))
    first = form.current
    assert first.disclosed_buyers == "Acme Insurance\nZenith Solar"
    assert set(first.named_buyer_ids) == {acme.id, zenith.id}
    spec = dict(name=form.name, fields=first.fields, consent_text=first.consent_text,
                disclosed_buyers="", default_country="US", floor_price=0, cap=1,
                thank_you_message=form.thank_you_message)
    builder.update_form(form, builder.FormSpec(**spec, named_buyers=(acme.id, zenith.id)))
    db.session.commit()
    assert form.current.number == 1  # the same names in another order: nothing changed
    builder.update_form(form, builder.FormSpec(**spec, named_buyers=(acme.id,)))
    db.session.commit()
    assert form.current.number == 2 and form.current.disclosed_buyers == "Acme Insurance"
    db.session.refresh(first)  # the earlier version keeps the names its people saw
    assert set(first.named_buyer_ids) == {acme.id, zenith.id}


def test_the_builder_offers_the_buyers_who_allow_it(app, seller_client):
    acme = named_buyer("Acme Insurance")
    funded_buyer(display_name="Shy Buyer")
    page = seller_client.get("/seller/forms/new").get_data(as_text=True)
    assert "Acme Insurance" in page and "Shy Buyer" not in page
    data = {"csrf_token": csrf_token(seller_client, "/seller/forms/new"), "name": "Quotes",
            "consent_text": "I agree to be called about insurance.", "audience": "named",
            "named_buyers": [str(acme.id)], "disclosed_buyers": "ignored when naming",
            "default_country": "US", "floor_price": "1.00", "cap": "1",
            "thank_you_message": "Thanks", "ask": ["first_name", "email"], "required": []}
    response = seller_client.post("/seller/forms/new", data=data)
    assert response.status_code == 302
    form = db.session.scalar(sa.select(LeadForm))
    assert form.current.named_buyer_ids == (acme.id,)
    assert form.current.disclosed_buyers == "Acme Insurance"
    edit = seller_client.get(f"/seller/forms/{form.id}").get_data(as_text=True)
    assert f'value="{acme.id}" id="named-{acme.id}" checked' in edit


def test_a_buyer_account_chooses_to_be_named_and_a_seller_is_not_asked(app):
    buyer = make_user("buyer", "buyer@example.com")
    web = app.test_client()
    log_in(web, buyer)
    page = web.get("/auth/account").get_data(as_text=True)
    assert "Sellers may name my company" in page
    response = web.post("/auth/account", data={
        "csrf_token": csrf_token(web, "/auth/account"), "display_name": "Acme Insurance",
        "timezone": "UTC", "named_on_forms": "y"})
    assert response.status_code == 302
    db.session.refresh(buyer)
    assert buyer.named_on_forms is True
    seller = make_user("seller", "seller@example.com")
    other = app.test_client()
    log_in(other, seller)
    assert "Sellers may name my company" not in other.get("/auth/account").get_data(as_text=True)
