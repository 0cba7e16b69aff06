"""flask commands (SPEC §11): users, ledger and demo data."""
import click
from flask import Flask
from flask.cli import AppGroup

from app.errors import DomainError
from app.extensions import db
from app.models import CompanyRole, Role, TrustLevel

users_cli = AppGroup("users", help="Create users, API keys and trust decisions.")
ledger_cli = AppGroup("ledger", help="Money on the ledger.")


def _fail(exc: DomainError):
    db.session.rollback()
    raise click.ClickException(exc.message)


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", "display_name", default="")
@click.option("--company", default=None,
              help="A seller or buyer: the new company the user owns (invite its members "
                   "with `flask users invite`).")
def create_user(email: str, password: str, role: str, display_name: str,
                company: str | None):
    """Create a user of any role (the only way to make an admin)."""
    from app.people import companies
    from app.services import accounts, audit, ledger

    try:
        if company is not None:
            user = companies.create_with_company(email, password, role, company,
                                                 display_name=display_name)
        else:
            user = accounts.create_user(email, password, role, display_name=display_name)
        ledger.open_accounts_for(user)
        audit.record("user.created_by_cli", actor=None, subject_type="user",
                     subject_id=user.id, details={"role": role, "company": company})
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    owning = f", owner of {user.company_name}" if user.company_name else ""
    click.echo(f"Created {user.role.value} {user.email} (id {user.id}{owning}).")


@users_cli.command("invite")
@click.option("--company", required=True, help="The company's name.")
@click.option("--email", required=True, help="Whom to invite.")
@click.option("--role", type=click.Choice([r.value for r in CompanyRole]),
              default=CompanyRole.MEMBER.value, show_default=True)
def invite(company: str, email: str, role: str):
    """Email someone an invitation to join a company (a one-time link)."""
    from app.people import companies

    try:
        invitee = companies.invite(companies.company_by_name(company), email, role, actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Invited {invitee.email} to {company} as {role}; the email is on its way.")


@users_cli.command("api-key")
@click.option("--email", required=True)
@click.option("--name", default="cli")
def create_api_key(email: str, name: str):
    """Print a new API key for the user on the last line."""
    from app.services import accounts

    try:
        user = accounts.user_by_email(email)
        _, secret = accounts.create_api_key(user, name)
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    click.echo(f"New API key for {user.email} (store it now; it is not shown again):")
    click.echo(secret)


@users_cli.command("trust")
@click.option("--email", required=True)
@click.option("--level", required=True, type=click.Choice([t.value for t in TrustLevel]))
@click.option("--reason", required=True)
def set_trust(email: str, level: str, reason: str):
    """An admin's trust decision for a seller (audited)."""
    from app.services import accounts

    try:
        seller = accounts.user_by_email(email)
        accounts.set_trust_level(seller, level, reason=reason, actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{seller.email} is now {level}.")


@ledger_cli.command("credit")
@click.option("--email", required=True)
@click.option("--amount", required=True, type=click.IntRange(min=1),
              help="Minor units (cents).")
@click.option("--reason", required=True)
def credit(email: str, amount: int, reason: str):
    """Credit a buyer's available balance (a wire received), audited."""
    from app.services import accounts, ledger
    from app.formatting import format_money

    try:
        buyer = accounts.user_by_email(email)
        txn = ledger.manual_credit(buyer, amount, reason=reason, actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    balance = ledger.balance_for(buyer)
    click.echo(
        f"Credited {format_money(amount)} to {buyer.email} (transaction {txn.id}); "
        f"available {format_money(balance.available)}."
    )


@ledger_cli.command("reconcile")
def reconcile():
    """Check that every transaction and account balances; exit 1 if not."""
    from app.services import ledger

    result = ledger.reconcile()
    click.echo(f"ledger total {result.ledger_total}; mismatched accounts "
               f"{len(result.mismatched_accounts)}; unbalanced transactions "
               f"{len(result.unbalanced_transactions)}")
    if not result.ok:
        raise SystemExit(1)


@click.command("demo")
@click.option("--if-empty", is_flag=True, help="Do nothing if the database has users.")
def demo(if_empty: bool):
    """Load demo sellers, buyers and an admin into an empty database."""
    from app.services import demo as demo_service

    if if_empty and not demo_service.database_is_empty():
        click.echo("The database already has data; demo not loaded again. Demo logins, "
                   f"unless changed: {', '.join(demo_service.demo_emails())} "
                   f"(password {demo_service.DEMO_PASSWORD}).")
        _echo_demo_admin_two_factor()
        return
    try:
        logins = demo_service.load_demo()
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    click.echo("Demo data loaded. Log in with:")
    for login in logins:
        click.echo(f"  {login.role:<7} {login.email:<28} password: {login.password}")
    _echo_demo_admin_two_factor()


def _echo_demo_admin_two_factor() -> None:
    from app.services import demo as demo_service

    click.echo("  The admin also needs a two-factor code: run `.venv/bin/flask demo-code` "
               "for the current one, or add the key "
               f"{demo_service.DEMO_ADMIN_TOTP_SEED} to an authenticator app.")


@click.command("demo-code")
def demo_code():
    """Print the demo admin's current two-factor code (from the published demo seed)."""
    from app.services import demo as demo_service

    click.echo(demo_service.demo_admin_code())


class MigrationCommands(click.Group):
    """`flask db`: Flask-Migrate's commands, imported when one of them runs (with
    Alembic, which no web or worker process needs: app.extensions.Migrations)."""

    def make_context(self, info_name, args, parent=None, **extra):
        from flask_migrate.cli import db as commands

        return commands.make_context(info_name, args, parent=parent, **extra)


def register_cli(app: Flask) -> None:
    app.cli.add_command(MigrationCommands("db", help="Perform database migrations."))
    app.cli.add_command(users_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(demo)
    app.cli.add_command(demo_code)
