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
    from his.hl7v2 import outbox

    outbox.set_application(settings.hl7_application)
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
@click.option(
    "--size",
    type=click.IntRange(min=0),
    default=0,
    help="Also a synthetic province of this many patients with a year of visits, "
    "examinations, prescriptions and bills before today (bulk-loaded; run it before "
    "starting the servers).",
)
@click.option("--seed", type=int, default=None, help="Seed of the synthetic province.")
@click.option(
    "--fhir/--no-fhir",
    default=True,
    help="Project the synthetic records into the FHIR store (about 250 resources a second).",
)
def demo(if_empty: bool, size: int, seed: int | None, fhir: bool) -> None:
    """Load the demo province (idempotent): facilities, staff (password 'demo'), patients;
    with --size N, also a synthetic province of N patients and their year of care."""
    from billing.demo import load_billing_demo
    from his.services.demo import is_empty, load_demo

    settings = _settings()
    database = _database(settings)
    with database.session() as session:
        if if_empty and not is_empty(session):
            click.echo("database already has data; demo not loaded")
            return
        if size:
            from his.synthetic.load import AlreadyLoaded, refuse_if_loaded

            try:
                refuse_if_loaded(session)
            except AlreadyLoaded as exc:
                raise click.ClickException(str(exc)) from exc
        counts = load_demo(session)
        load_billing_demo(session, settings.claim_keys_dir)
    click.echo(
        f"demo province: {counts['facilities']} facilities, {counts['users']} users, "
        f"{counts['patients_created']} new patients"
    )
    if size:
        _synthetic_province(database, size, seed, fhir)


def _synthetic_province(database, size: int, seed: int | None, fhir: bool) -> None:
    from his.fhirapi import projection
    from his.localtime import local_today
    from his.synthetic.load import AlreadyLoaded, load_province
    from his.synthetic.people import DEFAULT_SEED

    with click.progressbar(length=size, label="synthetic province") as bar:
        done = [0]

        def progress(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        try:
            meta = load_province(
                database,
                patients=size,
                seed=DEFAULT_SEED if seed is None else seed,
                as_of=local_today(),
                progress=progress,
            )
        except AlreadyLoaded as exc:
            raise click.ClickException(str(exc)) from exc
    rows = meta["rows"]
    click.echo(
        f"synthetic province: {meta['facilities']} facilities, {rows['patient']} patients, "
        f"{rows['visit']} visits, {rows['prescription']} prescriptions, {rows['bill']} bills "
        f"({meta['timings']['total_s']:.0f} s)"
    )
    if fhir:
        with database.session() as session:
            written = projection.rebuild_all(session)
        click.echo(f"FHIR projection: {written} resource versions written")


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

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            created = create_user(
                session,
                username=username,
                password=password,
                full_name=full_name,
                facility_code=facility_code,
                roles=roles,
                min_password_length=settings.password_min_length,
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


@main.group()
def catalog() -> None:
    """ICD-10 lists, drug and service catalogs."""


@catalog.group("load")
def catalog_load() -> None:
    """Load a catalog file; a file with any wrong row loads nothing."""


def _catalog_error(exc) -> click.ClickException:
    details = "\n".join(f"  {k}: {'; '.join(v)}" for k, v in exc.errors.items())
    return click.ClickException(f"{exc.detail}\n{details}".rstrip())


@catalog_load.command("icd10")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Version name, e.g. 'TT 06/2026/TT-BYT'")
@click.option("--valid-from", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--valid-to", type=click.DateTime(["%Y-%m-%d"]), help="Last day in force")
@click.option("--source", help="The decision or circular it comes from")
def catalog_load_icd10(file: Path, name: str, valid_from, valid_to, source) -> None:
    """The Ministry of Health's ICD-10 list (CSV or XLSX in its published 29-column layout)."""
    from his.errors import DomainError
    from his.services.catalog_import import load_moh_icd10

    database = _database(_settings())
    try:
        with database.session() as session:
            _version, count = load_moh_icd10(
                session,
                file,
                name=name,
                valid_from=valid_from.date(),
                valid_to=valid_to.date() if valid_to else None,
                source=source,
            )
    except DomainError as exc:
        raise _catalog_error(exc) from exc
    click.echo(f"ICD-10 version '{name}': {count} codes loaded")


def _load_facility_catalog(kind: str, file: Path, facility_code: str, valid_from) -> None:
    from sqlalchemy import select

    from his.errors import DomainError
    from his.localtime import local_today
    from his.models import Facility
    from his.services import catalog_import

    loader = catalog_import.load_drugs if kind == "drugs" else catalog_import.load_services
    database = _database(_settings())
    try:
        with database.session() as session:
            facility = session.scalar(select(Facility).where(Facility.code == facility_code))
            if facility is None:
                raise click.ClickException(f"No facility has the code {facility_code}.")
            day = valid_from.date() if valid_from else local_today()
            result = loader(session, facility, file, day)
    except DomainError as exc:
        raise _catalog_error(exc) from exc
    click.echo(
        f"{kind} of {facility_code} from {day.isoformat()}: {result.created} new, "
        f"{result.changed} changed, {result.unchanged} unchanged"
    )


@catalog_load.command("drugs")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--facility", "facility_code", required=True, help="5-character facility code")
@click.option("--valid-from", type=click.DateTime(["%Y-%m-%d"]), help="Default: today")
def catalog_load_drugs(file: Path, facility_code: str, valid_from) -> None:
    """A facility's drug catalog (CSV/XLSX with a header row, see his/data/demo_drugs.csv)."""
    _load_facility_catalog("drugs", file, facility_code, valid_from)


@catalog_load.command("services")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--facility", "facility_code", required=True, help="5-character facility code")
@click.option("--valid-from", type=click.DateTime(["%Y-%m-%d"]), help="Default: today")
def catalog_load_services(file: Path, facility_code: str, valid_from) -> None:
    """A facility's technical services (CSV/XLSX, see his/data/demo_services.csv)."""
    _load_facility_catalog("services", file, facility_code, valid_from)


@main.group()
def eprescription() -> None:
    """Signed prescriptions and the national e-prescription system."""


@eprescription.command("send")
@click.option("--loop", is_flag=True, help="Keep sending, every --interval seconds.")
@click.option("--interval", default=15.0, show_default=True, help="Seconds between rounds")
@click.option("--limit", default=20, show_default=True, help="At most this many per round")
@click.option(
    "--with-parent",
    is_flag=True,
    help="Stop when the process that started this one exits (how `make run` starts it).",
)
def eprescription_send(loop: bool, interval: float, limit: int, with_parent: bool) -> None:
    """Send the signed prescriptions that are due; retry the failed ones with backoff."""
    from his.cli_rounds import next_round
    from his.services.eprescription import (
        SendReport,
        client_from_settings,
        pending_count,
        send_pending,
    )

    settings = _settings()
    database = _database(settings)
    client = client_from_settings(settings)
    if client is None:
        with database.session() as session:
            waiting = pending_count(session)
        click.echo(
            f"HIS_EPRESCRIPTION_URL is not set: {waiting} prescription(s) stay pending, "
            "nothing sent"
        )
        return
    parent = os.getppid()
    while True:
        try:
            with database.session() as session:
                report = send_pending(session, client, limit=limit)
        except Exception as exc:
            if not loop:
                raise
            # A database restart must not end the sender: the next round tries again.
            click.echo(f"e-prescription round failed: {exc}", err=True)
            report = SendReport()
        if report.total or not loop:
            click.echo(
                f"e-prescriptions: {report.accepted} accepted, {report.rejected} rejected, "
                f"{report.retry} to retry"
            )
        if not loop:
            return
        # A full round means more may be due: go again at once.
        if not next_round(0 if report.total >= limit else interval, interval, with_parent, parent):
            return


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


# --- FHIR: `his fhir ...` lives in his/cli_fhir.py --------------------------------------------
from his.cli_fhir import fhir as _fhir_group  # noqa: E402  (after main is defined)

main.add_command(_fhir_group)

# --- HL7 v2: `his hl7 ...` lives in his/cli_hl7.py ---------------------------------------------
from his.cli_hl7 import hl7 as _hl7_group  # noqa: E402  (after main is defined)

main.add_command(_hl7_group)

# --- billing: `his billing ...` lives in his/cli_billing.py -------------------------------------
from his.cli_billing import billing as _billing_group  # noqa: E402  (after main is defined)

main.add_command(_billing_group)

# --- claims: `his claims ...` lives in his/cli_claims.py --------------------------------------
from his.cli_claims import claims as _claims_group  # noqa: E402  (after main is defined)

main.add_command(_claims_group)


# --- backup and restore: `his backup`, `his restore` live in his/cli_backup.py -------------------
from his.cli_backup import backup as _backup_command  # noqa: E402  (after main is defined)
from his.cli_backup import restore as _restore_command  # noqa: E402

main.add_command(_backup_command)
main.add_command(_restore_command)

if __name__ == "__main__":
    main()
