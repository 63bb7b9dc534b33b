"""``his fhir``: the FHIR API's operator commands (backend clients; the bulk export worker).

Kept apart from ``his.cli`` so each FHIR piece adds its commands here; ``his.cli`` only
registers the group.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _database():
    # Imported late: his.cli imports this module to register the group.
    from his.cli import _database, _settings

    return _database(_settings())


def _domain_error(exc) -> click.ClickException:
    details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in (exc.errors or {}).items())
    return click.ClickException(f"{exc.detail} {details}".strip())


@click.group()
def fhir() -> None:
    """The FHIR API: backend clients and bulk export."""


# --- backend clients (SMART Backend Services) -------------------------------------------------


@fhir.group()
def client() -> None:
    """Machine clients of the FHIR API (SMART Backend Services)."""


@client.command("add")
@click.argument("name")
@click.option("--jwks-url", help="HTTPS URL of the client's JSON Web Key Set (preferred).")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file holding the client's JSON Web Key Set.",
)
@click.option(
    "--scope", "scopes", required=True, help="Space-separated system scopes it may ask for."
)
@click.option(
    "--facility",
    "facilities",
    multiple=True,
    help="5-character facility code it may see; repeat for several (default: every facility).",
)
def client_add(name: str, jwks_url: str | None, jwks_file: Path | None, scopes: str, facilities):
    """Register a backend client whose client_id is NAME."""
    from his.errors import DomainError
    from his.services import fhir_clients
    from his.services.access import Principal

    if bool(jwks_url) == bool(jwks_file):
        raise click.UsageError("Give exactly one of --jwks-url and --jwks.")
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{jwks_file} is not a JSON file: {exc}") from exc
    database = _database()
    try:
        with database.session() as session:
            created = fhir_clients.register(
                session,
                Principal.system("cli"),
                client_id=name,
                jwks_url=jwks_url,
                jwks=jwks,
                scopes=scopes,
                facility_codes=list(facilities),
            )
            summary = f"client {created.client_id} registered; scopes: {created.scopes}"
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(summary)


@client.command("list")
def client_list() -> None:
    """Every registered client, its key source, scopes and facilities."""
    from his.services import fhir_clients
    from his.services.access import Principal

    database = _database()
    with database.session() as session:
        rows = fhir_clients.list_clients(session, Principal.system("cli"))
        for row in rows:
            keys = row.client.jwks_url or "inline JWKS"
            where = ",".join(row.facility_codes) if row.facility_codes else "all facilities"
            state = "active" if row.client.active else "disabled"
            click.echo(f"{row.client.client_id}\t{state}\t{row.client.scopes}\t{where}\t{keys}")


@client.command("disable")
@click.argument("name")
def client_disable(name: str) -> None:
    """Refuse the client's new token requests and revoke its live access tokens."""
    from his.errors import DomainError
    from his.services import fhir_clients
    from his.services.access import Principal

    database = _database()
    try:
        with database.session() as session:
            fhir_clients.set_active(session, Principal.system("cli"), name, active=False)
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"client {name} disabled")


# --- bulk export (added by the bulk work) -----------------------------------------------------


@fhir.command("export-worker")
@click.option("--loop", is_flag=True, help="Keep waiting for new exports, every --interval s.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between looks")
@click.option(
    "--with-parent",
    is_flag=True,
    help="Stop when the process that started this one exits (how `make run` starts it).",
)
def export_worker(loop: bool, interval: float, with_parent: bool) -> None:
    """Write the files of queued $export jobs (and of jobs whose worker died); expire old
    ones. Without --loop: every waiting job once, then exit."""
    import os

    from his.cli import _settings
    from his.cli_rounds import next_round
    from his.services import fhir_export

    settings = _settings()
    database = _database()
    parent = os.getppid()
    while True:
        try:
            done = fhir_export.work_once(database, settings)
        except Exception as exc:
            if not loop:
                raise
            # A database restart must not end the worker: the next round tries again.
            click.echo(f"export round failed: {exc}", err=True)
            done = 0
        if done or not loop:
            click.echo(f"exports: {done} finished")
        if not loop:
            return
        if not next_round(interval, interval, with_parent, parent):
            return


@fhir.group("group")
def group_() -> None:
    """Patient groups an insurer exports together (Group/<id>/$export)."""


@group_.command("create")
@click.argument("name")
@click.option("--facility", "facility_code", help="5-character code of the owning facility.")
def group_create(name: str, facility_code: str | None) -> None:
    """Create an empty group; prints its id."""
    from his.errors import DomainError
    from his.services import fhir_export

    database = _database()
    try:
        with database.session() as session:
            group = fhir_export.create_group(session, name, facility_code)
            group_id = group.id
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"group {group_id} created: {name}")


@group_.command("add")
@click.argument("group_id", type=int)
@click.argument("patient_ids", type=int, nargs=-1, required=True)
def group_add(group_id: int, patient_ids: tuple[int, ...]) -> None:
    """Add patients (by id) to a group."""
    from his.errors import DomainError
    from his.services import fhir_export

    database = _database()
    try:
        with database.session() as session:
            added = fhir_export.add_members(session, group_id, list(patient_ids))
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"group {group_id}: {added} patient(s) added")


# --- the projection ----------------------------------------------------------------------------


@fhir.command("rebuild")
@click.option("--type", "types", multiple=True, help="Only this resource type; repeatable.")
@click.option(
    "--if-empty",
    is_flag=True,
    help="Only when nothing is projected yet (a database filled before the FHIR API existed).",
)
def rebuild(types: tuple[str, ...], if_empty: bool) -> None:
    """Write the FHIR projection of every record from the domain tables. Records already
    projected get a new version only where their JSON differs."""
    from sqlalchemy import exists, select

    from his.fhirapi import projection
    from his.models import FhirResource

    unknown = sorted(set(types) - set(projection.BUILDERS))
    if unknown:
        raise click.BadParameter(
            f"not projected: {', '.join(unknown)} "
            f"(projected: {', '.join(sorted(projection.BUILDERS))})",
            param_hint="--type",
        )
    with _database().session() as session:
        if if_empty and session.scalar(select(exists().where(FhirResource.rid.is_not(None)))):
            click.echo("the FHIR projection is already there")
            return
        written = projection.rebuild_all(session, types or None)
    click.echo(f"{written} resource versions written")
