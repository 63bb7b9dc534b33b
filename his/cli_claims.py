"""``his claims``: the BHYT claim files and the BHXH assessment gateway.

Kept apart from ``his.cli``, which registers the group (``main.add_command(claims)``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click


def _database():
    # Imported late: his.cli imports this module to register the group.
    from his.cli import _database, _settings

    settings = _settings()
    return _database(settings), settings


@click.group()
def claims() -> None:
    """BHYT claim files and the BHXH assessment gateway."""


@claims.command("send")
@click.option("--loop", is_flag=True, help="Keep sending, every --interval seconds.")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between rounds")
@click.option("--limit", default=50, show_default=True, help="At most this many per round")
@click.option(
    "--max-backoff",
    default=30 * 60,
    show_default=True,
    type=click.IntRange(min=60),
    help="Longest wait, in seconds, between tries while the gateway cannot answer",
)
@click.option(
    "--with-parent",
    is_flag=True,
    help="Stop when the process that started this one exits (how `make run` starts it).",
)
def claims_send(
    loop: bool, interval: float, limit: int, max_backoff: int, with_parent: bool
) -> None:
    """Send the queued claim files that are due; retry with backoff while the gateway
    cannot answer, and keep what it answers."""
    from billing.claim_gateway import gateway_from_settings
    from billing.claim_sender import queued_count, send_due
    from his.cli_rounds import next_round

    database, settings = _database()
    gateway = gateway_from_settings(settings)
    if gateway is None:
        _prepare(database, settings)
        with database.session(write=False) as session:
            waiting = queued_count(session)
        click.echo(
            f"HIS_BHXH_GATEWAY_URL is not set: {waiting} claim file(s) stay queued, nothing sent"
        )
        if not loop:
            return
    retry_cap = dt.timedelta(seconds=max_backoff)
    parent = os.getppid()
    while True:
        try:
            # Offline (no gateway yet, a commune station) the files are still made at the
            # end of each visit and wait, queued, for the gateway.
            _prepare(database, settings)
            counts = (
                send_due(database, gateway, limit=limit, retry_cap=retry_cap) if gateway else {}
            )
        except Exception as exc:
            if not loop:
                raise
            # A database restart must not end the sender: the next round tries again.
            click.echo(f"claim round failed: {exc}", err=True)
            counts = {}
        total = sum(counts.values())
        if total or not loop:
            click.echo(
                f"claim files: {counts.get('accepted', 0)} accepted, "
                f"{counts.get('rejected', 0)} rejected, {counts.get('retry', 0)} to retry"
            )
        if not loop:
            return
        # A full round means more may be due: go again at once.
        if not next_round(0 if total >= limit else interval, interval, with_parent, parent):
            return


def _prepare(database, settings) -> None:
    """Make and queue the check-ins and claim files that are missing (the last 7 days)."""
    from billing.claim_export import prepare_due
    from his.localtime import local_today

    with database.session() as session:
        made = prepare_due(session, local_today(), settings.claim_keys_dir)
    if made.made:
        click.echo(f"claim files made and queued: {len(made.made)}")
    for visit_code, reason in sorted(made.refused.items()):
        click.echo(f"claim not made for visit {visit_code}: {reason}", err=True)


@claims.command("export")
@click.option(
    "--from",
    "start",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day (YYYY-MM-DD) of the visits' end.",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day (YYYY-MM-DD), included.",
)
@click.option("--facility", "facility_code", help="5-character facility code (default: every).")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def claims_export(start: dt.datetime, end: dt.datetime, facility_code: str | None, folder: Path):
    """Write the signed claim file of every finished BHYT visit of the period to FOLDER (one
    sub-folder per facility), making the missing ones first."""
    from sqlalchemy import select

    from billing.claim_export import acting_for, export
    from his.models import Facility

    if end < start:
        raise click.BadParameter("--to is before --from")
    database, settings = _database()
    with database.session() as session:
        query = select(Facility).order_by(Facility.code)
        if facility_code:
            query = query.where(Facility.code == facility_code)
        facilities = session.scalars(query).all()
        if not facilities:
            raise click.ClickException(f"no facility has the code {facility_code}")
        for facility in facilities:
            written, refused = export(
                session,
                acting_for(facility),
                start.date(),
                end.date(),
                folder / facility.code,
                settings.claim_keys_dir,
            )
            click.echo(f"{facility.code}: {len(written)} claim file(s) in {folder / facility.code}")
            for visit_code, reason in sorted(refused.items()):
                click.echo(f"{facility.code}: visit {visit_code} not claimed: {reason}", err=True)
