"""Operations that store fills (SPEC §4, §5): a sale, its ledger transaction and its
webhook delivery, as one fill in a savepoint here, or many at once in
app.market.grouped. They flush; the caller commits.

A single fill re-checks every rule under row locks with conditional UPDATEs built
from app.market.rules (lead still on offer and under its cap, the price still at or
above its floor; order still open, unexpired, under the terms it was planned with
and within its quantity, hold and caps per period; the person not delivered to that buyer within the
lookback, nor on that buyer's suppression list, and inside the person's calling hours if
the order holds phone leads for them), with the database's UNIQUE and CHECK constraints
behind them. A fill that lost a race to another process is rolled back whole; nothing
is ever half-applied.
"""
from datetime import datetime, timedelta
from typing import Iterable, Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.core import figures
from app.core.dialect import in_, postgres, retryable
from app.extensions import db
from app.market import rules, snapshot
from app.market.book import Candidate, Slot
from app.models import (
    AccountKind, BuyerSuppression, Lead, LedgerAccount, Order, PersonClaim, PersonListing, Sale,
    User, WebhookDelivery,
)
from app.services import ledger
from app.services.ledger import Posting


def sale_key(lead_id: int, order_id: int) -> str:
    """The ledger idempotency key of a sale: a lead reaches an order at most once."""
    return f"sale:{lead_id}:{order_id}"


def group_key(order_id: int, first_sale_id: int) -> str:
    """The ledger idempotency key of an order's sales stored together in one group."""
    return f"sales:{order_id}:{first_sale_id}"


class NotLoaded(Exception):
    """A commission rate a Settlement has not loaded yet."""


class _Lost(Exception):
    """The database refused a planned fill: another process got there first."""


class Settlement:
    """Stores fills: the sale, its ledger transaction and its webhook delivery."""

    def __init__(self, now: datetime, rates: Optional[dict[int, Optional[int]]] = None):
        """`rates`: seller id -> their User.commission_rate_bp, for those read already."""
        self.now = now
        self.default_bp = current_app.config["COMMISSION_RATE_BP"]
        self._rates: dict[int, int] = {
            seller_id: self.default_bp if override is None else override
            for seller_id, override in (rates or {}).items()}
        self._accounts: dict[tuple, ledger.AccountRef] = {}
        self.sold: list[tuple[int, int, int, int]] = []  # (sale, lead, price, seller share)
        self.webhook_sale_ids: list[int] = []
        self.emailed: set[int] = set()  # those of them with a delivery by email
        self.touched_orders: set[int] = set()
        self._listing: dict[int, bool] = {}  # buyer -> has a suppression list (§14)
        # People's listings as last read or stored by this run (None: not listed), for
        # the groups storing a plan to start from (grouped._store); None: read them.
        self.listed: Optional[dict[bytes, Optional[rules.Listing]]] = None

    def commission(self, seller_id: int, price: int, load: bool = True) -> int:
        """The exchange's cut of a sale: the seller's rate (or the default), half up.
        `load=False`: NotLoaded rather than a query (off the session's thread)."""
        if seller_id not in self._rates:
            if not load:
                raise NotLoaded(seller_id)
            override = db.session.scalar(sa.select(User.commission_rate_bp).where(User.id == seller_id))
            self._rates[seller_id] = self.default_bp if override is None else override
        return ledger.commission_on(price, self._rates[seller_id])

    @property
    def sale_ids(self) -> list[int]:
        """The sales stored, in order."""
        return [sale[0] for sale in self.sold]

    def absorb(self, other: "Settlement") -> None:
        """Add the sales of a sub-run (one chunk, one order) to this run's."""
        self.sold += other.sold
        self.webhook_sale_ids += other.webhook_sale_ids
        self.emailed |= other.emailed

    def sibling(self) -> "Settlement":
        """A Settlement for another connection storing part of the same plan: the
        commission rates shared, the accounts known so far copied (an account one
        connection creates is not the other's until committed), its sales its own
        (absorb them)."""
        other = Settlement(self.now)
        other._rates, other._accounts = self._rates, dict(self._accounts)
        other._listing, other.listed = self._listing, self.listed
        return other

    def listing_buyers(self, buyer_ids: Iterable[int]) -> set[int]:
        """Which of these buyers keep a suppression list, asked once per buyer in a run
        (a group of fills then looks people up only for them)."""
        unknown = set(buyer_ids) - set(self._listing)
        if unknown:
            listing = snapshot.buyers_with_lists(unknown)
            self._listing.update({buyer: buyer in listing for buyer in unknown})
        return {buyer for buyer in buyer_ids if self._listing[buyer]}

    def account(self, kind: AccountKind, user_id: Optional[int]) -> ledger.AccountRef:
        key = (kind, user_id)
        if key not in self._accounts:
            user = db.session.get(User, user_id) if user_id else None
            self._accounts[key] = ledger.AccountRef.of(ledger.account(kind, user))
        return self._accounts[key]

    def account_ids(self, kind: AccountKind):
        """user id -> the id of that user's account of this kind."""
        accounts = self._accounts

        def account_id(user_id: int) -> int:
            found = accounts.get((kind, user_id))
            return (found or self.account(kind, user_id)).id
        return account_id

    def load_accounts(self, keys: Iterable[tuple]) -> None:
        """These (kind, user id) accounts at hand: those not yet, in one query (the
        ones missing created)."""
        missing = {key for key in keys if key not in self._accounts}
        users = {user_id for _, user_id in missing if user_id is not None}
        if users:
            for account in db.session.scalars(sa.select(LedgerAccount).where(
                    in_(LedgerAccount.user_id, sorted(users), sa.Integer),
                    LedgerAccount.kind.in_(sorted({kind for kind, _ in missing})))):
                key = (account.kind, account.user_id)
                if key in missing:
                    self._accounts[key] = ledger.AccountRef.of(account)
        for key in missing:
            self.account(*key)

    def preload(self, buyer_ids: Iterable[int], seller_ids: Iterable[int]) -> None:
        """The accounts and commission rates a plan will need, in two queries rather
        than a few per user; accounts missing are created (the caller commits them
        before storing: two connections storing a plan's groups at once would both
        create a missing one, and the second would wait for the first's whole group)."""
        buyer_ids, seller_ids = set(buyer_ids), set(seller_ids)
        wanted = {AccountKind.BUYER_HELD: buyer_ids, AccountKind.BUYER_AVAILABLE: buyer_ids,
                  AccountKind.SELLER_PENDING: seller_ids}
        # Read only the users with an account not known yet (store_plan preloads again
        # what match_leads preloaded for the same group).
        users = sorted({user_id for kind, user_ids in wanted.items() for user_id in user_ids
                        if (kind, user_id) not in self._accounts})
        platform = (AccountKind.PLATFORM_COMMISSION, None)
        # A plan's sales pay the platform's commission: its account read with the first part.
        with_platform = bool(buyer_ids) and platform not in self._accounts
        for start in range(0, max(len(users), with_platform), 1000):
            part = users[start:start + 1000]
            found = sa.and_(LedgerAccount.user_id.in_(part), LedgerAccount.kind.in_(list(wanted)))
            if with_platform and start == 0:
                found = sa.or_(found, sa.and_(LedgerAccount.user_id.is_(None),
                                              LedgerAccount.kind == platform[0]))
            for account in db.session.scalars(sa.select(LedgerAccount).where(found)):
                if account.user_id is None or account.user_id in wanted[account.kind]:
                    self._accounts[(account.kind, account.user_id)] = ledger.AccountRef.of(account)
        if buyer_ids:  # created if it was not there
            self.account(*platform)
        for kind, user_ids in wanted.items():
            for user_id in user_ids:
                self.account(kind, user_id)
        sellers = sorted(seller_ids - set(self._rates))
        for start in range(0, len(sellers), 1000):
            for seller_id, override in db.session.execute(
                    sa.select(User.id, User.commission_rate_bp)
                    .where(User.id.in_(sellers[start:start + 1000]))):
                self._rates[seller_id] = self.default_bp if override is None else override

    def fill(self, lead: Candidate, slot: Slot) -> bool:
        """Store one planned fill whole, or nothing of it (False: lost a race)."""
        try:
            with db.session.begin_nested():
                self._fill(lead, slot)
        except _Lost:
            return False
        except IntegrityError:  # the UNIQUE/CHECK guards caught what a race slipped past
            return False
        except OperationalError as exc:
            if retryable(exc):
                return False
            raise
        return True

    def _fill(self, lead: Candidate, slot: Slot) -> None:
        now, price = self.now, slot.price
        ctx = rules.Ctx(now=now, keys=slot.keys, n=1, price=price, revision=slot.revision)
        if not rules.in_calling_hours(slot, lead, now):
            raise _Lost
        taken = db.session.execute(
            sa.update(Lead).where(Lead.id == lead.id, rules.LEAD_LIVE.sql(None, Lead, ctx),
                                  rules.LEAD_CAP.test(Lead, ctx), rules.FLOOR.sql(None, Lead, ctx))
            .values(sold_count=Lead.sold_count + 1)
            .execution_options(synchronize_session=False)).rowcount
        if taken != 1:
            raise _Lost
        for person in lead.person_hashes:  # the buyer's claim on the person, then theirs
            if not self._claim(slot.buyer_id, person, slot.lookback):
                raise _Lost
        if (self.listing_buyers((slot.buyer_id,)) and db.session.scalar(sa.select(
                rules.listed_by(slot.buyer_id, *rules.contact_hashes(lead.person_hashes),
                                BuyerSuppression)))):
            raise _Lost  # the buyer listed the person since the plan was made
        # What fills share, locked last: the person's listing, the order, the accounts.
        for person in lead.person_hashes:
            if not self._list_person(person, lead.cap):
                raise _Lost
        order = db.session.execute(
            sa.update(Order).where(Order.id == slot.id, rules.order_takes(Order, ctx),
                                   rules.TERMS_AS_PLANNED.sql(Order, None, ctx))
            .values(**rules.after_fills(Order, ctx))
            .returning(Order.held, Order.quantity, Order.filled, Order.budget, Order.spent)
            .execution_options(synchronize_session=False)).first()
        if order is None:
            raise _Lost
        release = rules.excess_hold(order, slot.highest)
        if release:
            db.session.execute(sa.update(Order).where(Order.id == slot.id)
                               .values(held=Order.held - release)
                               .execution_options(synchronize_session=False))
        commission = self.commission(lead.seller_id, price)
        sale_id = db.session.execute(sa.insert(Sale).values(
            order_id=slot.id, lead_id=lead.id, buyer_id=slot.buyer_id, seller_id=lead.seller_id,
            price=price, commission=commission, seller_share=price - commission,
            created_at=now, region=lead.region, batch_id=lead.batch_id
        ).returning(Sale.id)).scalar_one()
        figures.changed(slot.buyer_id, lead.seller_id)
        held = self.account(AccountKind.BUYER_HELD, slot.buyer_id)
        postings = [Posting(held, -price),
                    Posting(self.account(AccountKind.SELLER_PENDING, lead.seller_id),
                            price - commission)]
        if commission:
            postings.append(Posting(self.account(AccountKind.PLATFORM_COMMISSION, None),
                                    commission))
        movements = [ledger.Movement("sale", postings, sale_key(lead.id, slot.id),
                                     f"Sale #{sale_id}, order #{slot.id}")]
        if release:  # in the same call: the accounts are locked in one order (by id)
            movements.append(ledger.Movement("order_release", [
                Posting(held, -release),
                Posting(self.account(AccountKind.BUYER_AVAILABLE, slot.buyer_id), release)],
                memo=f"Order #{slot.id}"))
        transaction_id = ledger.post_many(movements, now)[0]
        db.session.execute(sa.update(Sale).where(Sale.id == sale_id)
                           .values(ledger_transaction_id=transaction_id)
                           .execution_options(synchronize_session=False))
        channels = [c for c, wanted in (("url", slot.has_webhook), ("email", slot.has_email))
                    if wanted]
        if channels:
            db.session.execute(sa.insert(WebhookDelivery).values([
                {"sale_id": sale_id, "order_id": slot.id, "channel": channel,
                 "next_attempt_at": now, "created_at": now} for channel in channels]))
            self.webhook_sale_ids.append(sale_id)
            if slot.has_email:
                self.emailed.add(sale_id)
        self.sold.append((sale_id, lead.id, price, price - commission))
        self.touched_orders.add(slot.id)

    def _list_person(self, person: bytes, copy_cap: int) -> bool:
        """One more buyer for this person, if their listing allows it."""
        row = db.session.execute(
            sa.select(PersonListing.cap, PersonListing.sold, PersonListing.first_sold_at)
            .where(PersonListing.person_hash == person).with_for_update(key_share=True)).first()
        after = rules.person_after_sale(rules.Listing(*row) if row else None, copy_cap, self.now)
        if after is None:
            return False
        if row is None:  # a concurrent first sale of the person wins; this fill is lost
            return db.session.execute(
                _insert(PersonListing).values(person_hash=person, **after._asdict())
                .on_conflict_do_nothing().returning(PersonListing.cap)).first() is not None
        db.session.execute(sa.update(PersonListing).where(PersonListing.person_hash == person)
                           .values(**after._asdict())
                           .execution_options(synchronize_session=False))
        return True

    def _claim(self, buyer_id: int, person: bytes, lookback: timedelta) -> bool:
        """Record the delivery of a person to a buyer unless one is inside the lookback."""
        statement = _insert(PersonClaim).values(buyer_id=buyer_id, person_hash=person, claimed_at=self.now)
        statement = statement.on_conflict_do_update(
            index_elements=[PersonClaim.buyer_id, PersonClaim.person_hash],
            set_={"claimed_at": self.now},
            where=rules.claim_expired(PersonClaim.claimed_at,
                                      rules.lookback_start(self.now, lookback)))
        # RETURNING, not rowcount: drivers disagree on rowcount for an upsert.
        return db.session.execute(statement.returning(PersonClaim.buyer_id)).first() is not None


def _insert(model):
    """INSERT with this database's ON CONFLICT clauses."""
    return (postgresql.insert if postgres() else sqlite.insert)(model)
