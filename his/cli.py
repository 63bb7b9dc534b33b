"""The ``his`` command: database, demo data, users and the servers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from his.config import PROJECT_ROOT, ConfigError, Settings
from his.db import Database


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _database(settings: Settings) -> Database:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        # SQLite creates the file but not its folder (instance/ on a fresh clone).
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return Database.from_url(settings.database_url)


@click.group()
def main() -> None:
    """Hospital information system: reception, examinations, prescriptions, BHYT billing."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations (run as a one-off job before starting new code)."""
    from his import migrate

    settings = _settings()
    _database(settings)
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("check")
def db_check() -> None:
    """Fail when the models and the migrations disagree."""
    from his import migrate

    migrate.check(_settings().database_url)
    click.echo("models and migrations agree")


@main.command()
@click.option("--if-empty", is_flag=True, help="Only load into a database with no facilities.")
def demo(if_empty: bool) -> None:
    """Load the demo province (idempotent): facilities, staff (password 'demo'), patients."""
    from his.services.demo import is_empty, load_demo

    database = _database(_settings())
    with database.session() as session:
        if if_empty and not is_empty(session):
            click.echo("database already has data; demo not loaded")
            return
        counts = load_demo(session)
    click.echo(
        f"demo province: {counts['facilities']} facilities, {counts['users']} users, "
        f"{counts['patients_created']} new patients"
    )


@main.group()
def user() -> None:
    """Staff accounts."""


@user.command("create")
@click.option("--username", required=True)
@click.option("--full-name", required=True)
@click.option("--facility", "facility_code", required=True, help="5-character facility code")
@click.option("--role", "roles", multiple=True, required=True, help="Repeat for several roles")
@click.password_option()
def user_create(username: str, full_name: str, facility_code: str, roles, password: str) -> None:
    """Create a user; the password is asked for twice (or read from --password)."""
    from his.errors import DomainError
    from his.services.users import create_user

    database = _database(_settings())
    try:
        with database.session() as session:
            created = create_user(
                session,
                username=username,
                password=password,
                full_name=full_name,
                facility_code=facility_code,
                roles=roles,
            )
            name = created.username
    except DomainError as exc:
        details = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.errors.items())
        raise click.ClickException(f"{exc.detail} {details}".strip()) from exc
    click.echo(f"user {name} created")


@main.group()
def bhyt() -> None:
    """Health-insurance cards."""


@bhyt.command("recheck")
@click.option("--limit", default=100, show_default=True, help="At most this many cards")
def bhyt_recheck(limit: int) -> None:
    """Check again the cards registered while the BHXH gateway could not be reached."""
    from his.services.bhyt_check import checker_for, recheck_unverified

    settings = _settings()
    with _database(settings).session() as session:
        changed = recheck_unverified(session, checker_for(settings), limit=limit)
    click.echo(f"{changed} card(s) changed status")


DEMO_LOGINS = (
    "reception / demo (receptionist), doctor / demo, pharmacist / demo, cashier / demo, "
    "admin / demo, auditor / demo, nurse / demo; commune station: reception.tyt / demo, "
    "doctor.tyt / demo"
)


@main.command()
def serve() -> None:
    """Serve the web UI, REST API and (once it exists) FHIR with gunicorn."""
    settings = _settings()
    if not settings.is_production and not os.environ.get("HIS_SECRET_KEY"):
        # One throwaway key for all workers: each would otherwise make its own, and a
        # session cookie signed by one worker would be refused by the next.
        os.environ["HIS_SECRET_KEY"] = settings.secret_key
    click.echo(f"HIS listening on http://{settings.host}:{settings.port}/")
    click.echo(f"API documentation: http://{settings.host}:{settings.port}/api/docs")
    click.echo(f"Demo logins (if the demo province is loaded): {DEMO_LOGINS}")
    sys.stdout.flush()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(PROJECT_ROOT / "gunicorn.conf.py"),
        "his:create_app()",
    ]
    os.execv(sys.executable, argv)  # noqa: S606 (replaces this process with gunicorn)


if __name__ == "__main__":
    main()
