"""The seller's batch pages (issue 17 item 3): a table whose every figure is reachable
at any width, spot-check failures the seller can act on, and pages that run the same
queries however many batches or failed leads they show."""
import random
import re
from datetime import datetime, timezone

import sqlalchemy as sa

from app.extensions import db
from app.formatting import format_money
from app.models import Batch, Lead, Role, SpotCheckItem, TrustLevel
from app.services import batches, quality, spotchecks
from app.services.crypto import current_vault
from tests import quality_corpus as corpus
from tests.conftest import log_in, make_user
from tests.ingest_helpers import csv_bytes, ingest, person
from tests.query_count import queries_for


def _seller_client(app, seller):
    client = app.test_client()
    log_in(client, seller)
    return client


def _clean_batch(seller, rows: int = 40) -> Batch:
    rng, now = random.Random(rows), datetime.now(timezone.utc)
    batch = ingest(seller, corpus.to_csv([corpus.person(rng, i, now, quirks=False)
                                          for i in range(rows)]))
    quality.assess_batch(batch.id)
    return db.session.get(Batch, batch.id)


def _fail(batch, admin, bad: int = 1, notes=("The number belongs to a pizzeria",)):
    check = spotchecks.start_check(batch, admin, seed=11)
    items = db.session.scalars(sa.select(SpotCheckItem).where(SpotCheckItem.check_id == check.id)
                               .order_by(SpotCheckItem.position)).all()
    for i, item in enumerate(items[:bad]):
        spotchecks.record_verdict(check, item.id, "fake" if i % 2 == 0 else "no_consent", admin,
                                  note=notes[i % len(notes)])
    spotchecks.decide(check, admin, note="Several numbers do not exist")
    db.session.commit()
    return items[:bad]


def test_the_batch_table_keeps_every_figure_and_hides_only_low_priority_columns(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = ingest(seller, csv_bytes([person(i) for i in range(3)]), cap=3, floor_price=250)
    page = _seller_client(app, seller).get("/seller/batches").get_data(as_text=True)
    header = page[page.index("<thead>"):page.index("</thead>")]
    for always in ("Batch", "Status", "Sold", "Earned"):
        assert re.search(rf'<th( class="num")?( title="[^"]*")?>{always}</th>', header), always
    for narrow_hidden in ("Buyers per lead", "Floor", "Accepted"):
        assert re.search(rf'<th class="num d-none d-(sm|md|lg)-table-cell"[^>]*>{narrow_hidden}</th>',
                         header), narrow_hidden  # shown from a tablet's width up
    for wide_only in ("Rejected", "Returned"):  # SPEC §8's counts, in Details below too
        assert re.search(rf'<th class="num d-none d-xl-table-cell"[^>]*>{wide_only}</th>',
                         header), wide_only
    details = page[page.index(f'id="batch-more-{batch.id}"'):]
    details = details[:details.index("</tr>")]
    assert "<dt>Buyers per lead (cap)</dt><dd>3</dd>" in details
    assert "<dt>Floor price</dt><dd>$2.50</dd>" in details and "<dt>Refunded</dt><dd>0 sales, $0.00 of your share" in details
    assert f'data-bs-target="#batch-more-{batch.id}"' in page


def test_a_failed_spot_check_shows_the_seller_which_leads_failed_and_why(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    admin = make_user(Role.ADMIN)
    batch = _clean_batch(seller)
    [failed] = _fail(batch, admin)
    client = _seller_client(app, seller)
    page = client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    section = page[page.index('id="spot-check"'):page.index("</section>")]
    contact = current_vault().open_contact(failed.lead.contact_enc)
    assert "The admin's note:</strong> Several numbers do not exist" in section
    assert f'data-lead-id="{failed.lead_id}"' in section and contact["email"] in section
    assert f"<strong>Row {failed.lead.row_number}</strong>" in section
    assert "Fake" in section and "on this lead: The number belongs to a pizzeria" in section
    others = db.session.scalars(sa.select(SpotCheckItem).where(
        SpotCheckItem.check_id == failed.check_id, SpotCheckItem.id != failed.id)).all()
    assert not any(f'data-lead-id="{item.lead_id}"' in section for item in others)
    # The batch list points at it, and the notification names the lead and the note.
    listing = client.get("/seller/batches").get_data(as_text=True)
    assert f"/seller/batches/{batch.id}#spot-check" in listing
    notice = client.get("/notifications/").get_data(as_text=True)
    assert f"Lead #{failed.lead_id} (row {failed.lead.row_number}): fake (The number belongs to a pizzeria)" in notice
    # Another seller sees none of it.
    assert _seller_client(app, make_user(Role.SELLER)).get(
        f"/seller/batches/{batch.id}").status_code == 404


def test_a_passed_or_open_check_shows_no_failed_leads(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = _clean_batch(seller, rows=20)
    spotchecks.start_check(batch, make_user(Role.ADMIN))
    db.session.commit()
    page = _seller_client(app, seller).get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "An admin is contacting a sample" in page and 'id="failed-leads"' not in page


def test_seller_pages_run_the_same_queries_however_many_batches_and_failures(app):
    admin = make_user(Role.ADMIN)
    few, many = (make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED) for _ in range(2))
    small = _clean_batch(few, rows=30)
    _fail(small, admin, bad=1)
    batches = [_clean_batch(many, rows=30 + i) for i in range(6)]
    _fail(batches[0], admin, bad=6, notes=("a", "b", "c"))
    few_client, many_client = _seller_client(app, few), _seller_client(app, many)
    for url in ("/seller/", "/seller/batches"):
        assert queries_for(many_client, url) == queries_for(few_client, url), url
    assert (queries_for(many_client, f"/seller/batches/{batches[0].id}")
            == queries_for(few_client, f"/seller/batches/{small.id}"))


def test_the_batch_page_says_one_thing_about_the_phone_country(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = ingest(seller, csv_bytes([person(1, phone="12345", region="Москва"),
                                      person(2, phone="12345", region="")]), country="US")
    page = _seller_client(app, seller).get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    header = page[page.index('id="phone-home"'):]
    header = header[:header.index("</span>")]
    assert "the lead's country (from its country, region or city column), else of US" in header
    assert "read as RU, from the row&#39;s region" in page  # the Moscow row
    assert "read as US, from the batch&#39;s default country" in page


def _terms_shown(page: str) -> str:
    shown = page[page.index('id="batch-terms-shown"'):]
    return shown[:shown.index("</span>")]


def test_the_real_time_batch_shows_the_terms_its_leads_were_posted_with(app, client,
                                                                        api_key_for):
    """Real-time leads each carry their post's floor and cap: the day's batch shows them
    while its leads share them, and their range, set per lead, once they differ."""
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    headers, pages = api_key_for(seller), _seller_client(app, seller)
    lead = {"consent_at": "2026-11-01T09:30:00Z", "source_url": "https://x.example.com",
            "default_country": "US"}
    first = client.post("/api/v1/leads", headers=headers,
                        json=lead | {"email": "first@mail.example.com", "floor_price": 300,
                                     "cap": 1})
    assert first.status_code == 201, first.json
    batch_id = db.session.get(Lead, first.json["id"]).batch_id
    page = pages.get(f"/seller/batches/{batch_id}").get_data(as_text=True)
    assert " ".join(_terms_shown(page).split()) == (
        f'id="batch-terms-shown">exclusive · floor {format_money(300)}')
    assert "the country its post gave as default_country" in page

    second = client.post("/api/v1/leads", headers=headers,
                         json=lead | {"email": "second@mail.example.com", "floor_price": 500,
                                      "cap": 3})
    assert second.status_code == 201, second.json
    assert db.session.get(Lead, second.json["id"]).batch_id == batch_id  # the day's batch
    page = pages.get(f"/seller/batches/{batch_id}").get_data(as_text=True)
    assert " ".join(_terms_shown(page).split()) == (
        f'id="batch-terms-shown">1 to 3 buyers per lead · floor {format_money(300)} to '
        f"{format_money(500)} (set per lead: each real-time lead keeps the terms it was "
        "posted with)")
    # The list of batches does not show the first lead's terms as the batch's either.
    row = pages.get("/seller/batches").get_data(as_text=True).split(
        f'data-batch-id="{batch_id}"')[1].split("</tr>")[0]
    assert "set per lead" in row and format_money(300) not in row


def test_the_batch_page_says_in_words_why_rows_were_rejected(app):
    from app.labels import LABELS
    from app.services.ingest.validate import VERDICTS

    assert set(LABELS["rejection"]) == set(VERDICTS)  # every verdict has its words
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    rows = [person(i) for i in range(3)] + [person(0), person(9, email="not-an-email")]
    batch = ingest(seller, csv_bytes(rows))
    page = _seller_client(app, seller).get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    counts = page[page.index('id="rejection-counts"'):]
    counts = counts[:counts.index("</ul>")]
    assert "<li>Repeats an earlier row of this file (<code>duplicate_in_batch</code>): 1</li>" \
        in counts
    assert "<li>Email address not valid (<code>invalid_email</code>): 1</li>" in counts


def test_a_held_batch_withdrawn_whole_no_longer_says_it_waits_for_a_spot_check(
        app, admin, admin_client):
    from app.services import spotchecks

    seller = make_user(Role.SELLER)  # new: the batch is held until a check passes
    batch = ingest(seller, csv_bytes([person(1), person(2)]))
    client = _seller_client(app, seller)
    page = client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "so it waits for a passed spot-check" in page
    check = spotchecks.start_check(batch, admin)  # opened before the seller withdrew
    db.session.commit()
    batches.withdraw(seller, batch.id)
    db.session.commit()
    page = client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "so it waits for a passed spot-check" not in page
    assert "Every lead of this batch was withdrawn: none waits for a spot-check" in page
    # Nor does its status badge, here or on the lists: only "Withdrawn" is shown.
    for url in (f"/seller/batches/{batch.id}", "/seller/batches", "/seller/"):
        page = client.get(url).get_data(as_text=True)
        assert "Held for a spot-check" not in page and ">Withdrawn</span>" in page, url
    for url in (f"/admin/users/{seller.id}", f"/admin/quality/batches/{batch.id}",
                f"/admin/quality/checks/{check.id}"):  # admins'
        page = admin_client.get(url).get_data(as_text=True)
        assert "Held for a spot-check" not in page and ">Withdrawn</span>" in page, url


def test_a_batch_with_no_row_accepted_says_so_instead_of_empty_sales(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = ingest(seller, csv_bytes([person(1, email="not-an-email", phone="12"),
                                      person(2, email="nor-this", phone="34")]))
    assert batch.accepted == 0 and batch.rejected == 2
    page = _seller_client(app, seller).get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "No row was accepted, so nothing of this batch is on offer" in page
    assert "Not sold yet." not in page and 'id="batch-temperatures"' not in page
    assert 'id="rejection-counts"' in page
