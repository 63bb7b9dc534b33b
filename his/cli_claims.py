"""``his claims``: the BHYT claim files and the BHXH assessment gateway.

Kept apart from ``his.cli``, which registers the group (``main.add_command(claims)``).
"""

from __future__ import annotations

import datetime as dt
import os
import time

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

    database, settings = _database()
    gateway = gateway_from_settings(settings)
    if gateway is None:
        with database.session(write=False) as session:
            waiting = queued_count(session)
        click.echo(
            f"HIS_BHXH_GATEWAY_URL is not set: {waiting} claim file(s) stay queued, nothing sent"
        )
        return
    retry_cap = dt.timedelta(seconds=max_backoff)
    parent = os.getppid()
    while True:
        try:
            counts = send_due(database, gateway, limit=limit, retry_cap=retry_cap)
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
        deadline = time.monotonic() + (0 if total >= limit else interval)
        while time.monotonic() < deadline:
            if with_parent and os.getppid() != parent:
                return
            time.sleep(min(0.5, interval))
        if with_parent and os.getppid() != parent:
            return
