"""Who acts for which account (SPEC §2), queries only: a company's account is its
founding owner's user, and its people point at it (app.people.companies has the
operations: naming, inviting, accepting, removing). `account_of` is the one place
that resolves whose balance, orders, batches and sales a person works with."""
import sqlalchemy as sa

from app.extensions import db
from app.models import CompanyRole, User


def account_of(user: User) -> User:
    """The account the user acts for: their company's, or their own."""
    return user.account_holder if user.account_holder_id is not None else user


def is_owner(user: User) -> bool:
    return user.company_role is CompanyRole.OWNER


def manages(user: User, account: User) -> bool:
    """The user runs the account's team (invites, removes, reads its activity): an owner
    of its company, or the account's own user before it names one (nobody else yet)."""
    return is_owner(user) or account.company_name is None


def people_of(account_id: int) -> list[int]:
    """Who is told about the account's events: every active person of the company
    (the account's own user first), or the user alone."""
    return [account_id] + list(db.session.scalars(
        sa.select(User.id).where(User.account_holder_id == account_id,
                                 User.company_role.is_not(None),
                                 User.is_active_account.is_(True)).order_by(User.id)))


def people(account: User) -> list[User]:
    """The company's people: the account's own user, then everyone invited who was not
    removed (joined or still invited), in the order they were invited."""
    return [account] + list(db.session.scalars(
        sa.select(User).where(User.account_holder_id == account.id,
                              User.company_role.is_not(None)).order_by(User.id)))
