import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEvent, Role, TrustLevel, User
from app.services import accounts, ledger
from tests.conftest import log_in, make_user


def _run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    db.session.expire_all()
    return result


def test_users_create_makes_an_admin(app):
    result = _run(app, "users", "create", "--email", "Root@Example.com", "--password",
                  "long enough password", "--role", "admin")
    assert result.exit_code == 0, result.output
    user = accounts.find_user_by_email("root@example.com")
    assert user.role is Role.ADMIN
    assert accounts.authenticate("root@example.com", "long enough password") == user


def test_users_create_reports_errors_and_creates_nothing(app):
    make_user(email="dup@example.com")
    result = _run(app, "users", "create", "--email", "dup@example.com", "--password",
                  "long enough password", "--role", "buyer")
    assert result.exit_code != 0 and "already exists" in result.output
    result = _run(app, "users", "create", "--email", "x@example.com", "--password", "short",
                  "--role", "buyer")
    assert result.exit_code != 0 and "10 to 200 characters" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_api_key_is_printed_on_the_last_line_and_works(app, client):
    user = make_user(Role.SELLER)
    result = _run(app, "users", "api-key", "--email", user.email)
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    response = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def test_ledger_credit_is_audited(app):
    buyer = make_user(Role.BUYER)
    result = _run(app, "ledger", "credit", "--email", buyer.email, "--amount", "15000",
                  "--reason", "wire ref 42")
    assert result.exit_code == 0, result.output
    assert ledger.balance_for(buyer).available == 15_000
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "ledger.manual_credit"))
    assert event.details["amount"] == 15_000 and event.details["reason"] == "wire ref 42"
    assert _run(app, "ledger", "credit", "--email", buyer.email, "--amount", "0",
                "--reason", "x").exit_code != 0
    assert _run(app, "ledger", "reconcile").exit_code == 0


def test_trust_command(app):
    seller = make_user(Role.SELLER)
    result = _run(app, "users", "trust", "--email", seller.email, "--level", "verified",
                  "--reason", "clean record")
    assert result.exit_code == 0, result.output
    assert db.session.get(User, seller.id).trust_level is TrustLevel.VERIFIED


def test_demo_loads_into_an_empty_database_only(app):
    result = _run(app, "demo")
    assert result.exit_code == 0, result.output
    roles = dict(db.session.execute(sa.select(User.role, sa.func.count()).group_by(User.role)).all())
    assert roles[Role.ADMIN] == 1 and roles[Role.SELLER] >= 2 and roles[Role.BUYER] >= 2
    assert "admin@demo.example.com" in result.output and "password:" in result.output
    assert accounts.authenticate("admin@demo.example.com", "demo-password-1") is not None
    assert ledger.reconcile().ok
    # A demo seller's leads name their sources, so the per-source figures show
    client = app.test_client()
    log_in(client, accounts.user_by_email("blogger@demo.example.com"), "demo-password-1")
    dashboard = client.get("/seller/").get_data(as_text=True)
    assert 'id="dashboard-sources"' in dashboard and "<code>newsletter</code>" in dashboard
    again = _run(app, "demo")
    assert again.exit_code != 0 and "empty" in again.output


def test_demo_if_empty_is_a_no_op_on_a_used_database(app):
    make_user(email="someone@example.com")
    result = _run(app, "demo", "--if-empty")
    assert result.exit_code == 0 and "not loaded again" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_db_commands_are_flask_migrates_with_their_options(app):
    """`flask db` imports Flask-Migrate only when it runs (app.cli.MigrationCommands).
    `heads` reads the scripts alone: env.py would leave this process's pooled SQLite
    connection without foreign keys."""
    assert _run(app, "db", "--directory", "migrations", "heads").exit_code == 0
    assert _run(app, "db", "--directory", "nowhere", "heads").exit_code != 0  # no scripts there
