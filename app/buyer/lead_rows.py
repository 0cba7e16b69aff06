"""The work list's rows as HTML (a helper: reads nothing, changes nothing), for
templates/buyer/_worklist.html and for the one row an outcome sends back.

Built in Python rather than by a Jinja macro: the macro cost 40% of the order page's
time (bench/web.py), a macro call and some forty autoescapes per row, fifty rows a
page. Here each text is escaped once, numbers are not escaped at all, and the row is
one f-string. The URLs come in built once per page (`RowLinks`), never a url_for or a
CSRF token per row. Change the markup here and in the browser tests together
(tests/e2e/test_worklist_flow.py reads these classes and ids).

A row's HTML is kept in this process, keyed by everything it is made of: the row as
read (every column, so any change to the sale, its lead, outcome, return or
certificate is a new key), the reader's locale and time zone and the page's URLs. Only the person's
clock, which changes every minute, is put in each time. The entries hold opened
contacts, so they live in memory only, at most ROW_SECONDS from when they were made
and ROWS_KEPT of them: a lead erased meanwhile is a new key at once, and its old
entry is gone within ROW_SECONDS."""
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

from markupsafe import Markup, escape

from app.buyer.worklist import shape
from app.formatting import format_money, user_language, user_locale, user_zone
from app.labels import label
from app.models.types import utcnow
from app.services.regions import region_name

ERASED = ('<span class="badge text-bg-secondary" title="The person asked to be erased">'
          'erased</span>')
DO_NOT_CALL = ('<span class="badge text-bg-warning" title="On its country\'s do-not-call '
               'list: sold for email contact only">do not call</span>')
OUTCOME_CHOICES = ("contacted", "converted", "bad")


@dataclass(frozen=True)
class RowLinks:
    """The URLs every row uses: the outcome's, and the return's and journey's with
    "{id}" where the row's sale or lead id goes."""

    outcome_url: str
    return_href: str
    journey_href: str


ROWS_KEPT = 2000  # per process: forty pages of fifty
ROW_SECONDS = 300.0
# Where the person's clock goes in a kept row: no escaped text can hold a "<".
_TIME = "<!--clock-->"
_kept: OrderedDict = OrderedDict()  # key -> (made at, HTML before the clock, zone, after)
_lock = threading.Lock()


def rows_html(found: Sequence, links: RowLinks) -> Markup:
    """The rows read by app/buyer/worklist.py (`page`), as HTML."""
    locale, made = user_locale(), time.monotonic()
    spelled = str(locale)  # a str compares in C, a babel Locale in Python
    zone = str(user_zone())  # sale times are written on the reader's clock
    keys = [(tuple(raw), spelled, zone, links) for raw in found]
    with _lock:
        while _kept and (len(_kept) > ROWS_KEPT
                         or next(iter(_kept.values()))[0] < made - ROW_SECONDS):
            _kept.popitem(last=False)
        hits = [_kept.get(key) for key in keys]
    for i, raw in enumerate(found):
        if hits[i] is None:
            r = shape(raw)
            before, clock, after = _row(r, links, locale.language).partition(_TIME)
            hits[i] = (made, before, r.person_zone if clock else None, after)  # erased: none
            with _lock:
                _kept[keys[i]] = hits[i]
                _kept.move_to_end(keys[i])  # in the order made: the oldest go first
    now, clocks, parts = utcnow(), {}, []
    for _, before, zone, after in hits:
        clock = clocks.get(zone, "")
        if zone is not None and not clock:
            clock = clocks[zone] = f"{now.astimezone(zone):%H:%M}"
        parts += (before, clock, after)
    return Markup("".join(parts))


def row_html(raw, links: RowLinks, *, error: Optional[str] = None,
             saved: bool = False) -> Markup:
    """One row read by app/buyer/worklist.py (`row`), as HTML, with what became of
    the outcome just posted."""
    r = shape(raw)
    return Markup(_row(r, links, user_language(), error, saved).replace(
        _TIME, f"{utcnow().astimezone(r.person_zone):%H:%M}", 1))


def _contact(r) -> str:
    if r.erased_at:
        return ERASED
    phone = (f'<a class="d-block text-nowrap" href="tel:{escape(r.phone)}">{escape(r.phone)}</a>'
             if r.phone else "")
    email = (f'<a class="d-block lead-email" href="mailto:{escape(r.email)}">{escape(r.email)}</a>'
             if r.email else "")
    return (f'<div class="fw-semibold">{escape(r.first_name or "")} {escape(r.last_name or "")}</div>'
            f'{phone}{DO_NOT_CALL if r.do_not_call else ""}'
            f'<span class="d-block small text-body-secondary local-time" title="The person\'s time '
            f'zone: {escape(str(r.person_zone))}">{_TIME} their time</span>{email}')


def _person(r, language: str) -> str:
    parts = [str(r.age) if r.age else ""]
    gendered = r.gender != "unknown"
    if gendered:
        parts.append((" · " if r.age else "") + escape(label(r.gender, "gender")))
    if r.region:
        parts.append((" · " if r.age or gendered else "") + escape(region_name(r.region, language)))
    if r.city or r.postal_code:
        parts.append(f'<br><span class="text-body-secondary">{escape(r.city or "")} '
                     f'{escape(r.postal_code or "")}</span>')
    parts.append(f'<br><span class="text-body-secondary">consent</span> <a class="text-nowrap" '
                 f'href="{escape(r.source_url)}" rel="noopener noreferrer nofollow" '
                 f'target="_blank">{r.consent_day}</a>')
    if r.certificate_id:
        parts.append(f' · <a class="badge text-bg-success certificate-link" '
                     f'href="/certificates/{escape(r.certificate_id)}" title="Consent the exchange '
                     f'recorded itself on the seller\'s hosted form">Certificate</a>')
    if r.trustedform_cert_url:
        parts.append(f' · <a href="{escape(r.trustedform_cert_url)}" rel="noopener noreferrer '
                     f'nofollow" target="_blank">TrustedForm</a>')
    if r.jornaya_leadid:
        parts.append(f'<br><span class="text-body-secondary" title="Jornaya LeadiD">'
                     f'{escape(r.jornaya_leadid)}</span>')
    return "".join(parts)


def _outcome(r, links: RowLinks, error: Optional[str], saved: bool) -> str:
    sale, o = r.sale_id, r.outcome
    options = "".join(f'<option value="{value}"{" selected" if o == value else ""}>{value}</option>'
                      for value in OUTCOME_CHOICES)
    if error:
        message = f'<div class="small text-danger outcome-error" role="alert">{escape(error)}</div>'
    elif saved:
        revenue = f" · {escape(format_money(r.revenue))}" if r.revenue is not None else ""
        message = (f'<div class="small text-success outcome-now" role="status">Saved: '
                   f'{escape(o)}{revenue}</div>')
    else:
        message = ""
    return (f'<div class="d-flex gap-1 outcome-form"><select name="status" id="status-{sale}" '
            f'class="form-select form-select-sm" aria-label="Outcome of sale {sale}">'
            f'<option value="" disabled{"" if o else " selected"}>no outcome yet</option>{options}'
            f'</select><input name="revenue" id="revenue-{sale}" class="form-control '
            f'form-control-sm outcome-revenue" placeholder="revenue" inputmode="decimal" '
            f'aria-label="Revenue of sale {sale}" value="{escape(r.revenue_input)}">'
            f'<button class="btn btn-sm {"btn-outline-success" if o else "btn-outline-primary"}" '
            f'type="button" hx-post="{escape(links.outcome_url)}" '
            f'hx-include="#status-{sale}, #revenue-{sale}" hx-vals=\'{{"sale_id": {sale}}}\' '
            f'hx-target="#sale-{sale}" hx-swap="outerHTML">{"Update" if o else "Save"}</button>'
            f'</div>{message}')


def _return(r, links: RowLinks) -> str:
    if r.return_status:
        refund = (f'<div class="small">{escape(format_money(r.refund))} refunded</div>'
                  if r.refund else "")
        return (f'<span class="badge return-{r.return_status}" data-status="{r.return_status}">'
                f'{escape(label(r.return_status, "return"))}</span>{refund}')
    if r.erased_at:
        return ERASED
    href = escape(links.return_href.format(id=r.sale_id))
    return f'<a class="btn btn-sm btn-outline-secondary" href="{href}">Return</a>'


def _row(r, links: RowLinks, language: str, error: Optional[str] = None,
         saved: bool = False) -> str:
    sale = r.sale_id
    journey = escape(links.journey_href.format(id=r.lead_id))
    return (f'<tr id="sale-{sale}"><td class="pick"><input class="form-check-input" '
            f'type="checkbox" name="sale_id" value="{sale}" form="worklist-bulk" '
            f'id="pick-{sale}" hx-preserve aria-label="Choose sale {sale}"></td>'
            f'<td data-label="Sale" class="text-nowrap sale"><span class="fw-semibold">#{sale}'
            f'</span><br><span class="small text-body-secondary">{r.sold}</span><br>'
            f'<a class="small journey-link" href="{journey}">Journey</a></td>'
            f'<td data-label="Score" class="text-nowrap score"><span class="badge '
            f'temp-{r.temperature}">{r.temperature}</span> {r.score}</td>'
            f'<td data-label="Contact" class="contact">{_contact(r)}</td>'
            f'<td data-label="Person and consent" class="small person">{_person(r, language)}</td>'
            f'<td data-label="Outcome" class="outcome">{_outcome(r, links, error, saved)}</td>'
            f'<td data-label="Return" class="return">{_return(r, links)}</td></tr>\n')
