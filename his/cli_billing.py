"""``his billing``: the dated billing parameters.

Kept apart from ``his.cli``, which registers the group (``main.add_command(billing)``).
"""

from __future__ import annotations

import datetime as dt

import click


def _database():
    # Imported late: his.cli imports this module to register the group.
    from his.cli import _database, _settings

    return _database(_settings())


@click.group()
def billing() -> None:
    """Billing: co-payment parameters (rates, thresholds, the base salary)."""


@billing.group()
def param() -> None:
    """Rates, thresholds and the base salary, each valid from a date."""


@param.command("set")
@click.argument("name")
@click.argument("value")
@click.option(
    "--from",
    "valid_from",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day the value applies (YYYY-MM-DD); the value in force ends the day before.",
)
@click.option("--source", default="set with his billing param set", help="The deciding text.")
def param_set(name: str, value: str, valid_from: dt.datetime, source: str) -> None:
    """Give NAME a new VALUE from a date on, e.g. `base_salary 2530000 --from 2026-07-01`."""
    from billing.params import set_param
    from his.cli_hl7 import _domain_error
    from his.errors import DomainError
    from his.services.access import Principal

    try:
        with _database().session() as session:
            row = set_param(
                session, Principal.system("cli"), name, value, valid_from.date(), source
            )
            line = f"{row.name} = {row.value.normalize():f} from {row.valid_from.isoformat()}"
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"parameter set: {line}")


@param.command("list")
@click.option("--on", "on", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only those in force.")
def param_list(on: dt.datetime | None) -> None:
    """Every parameter with its periods and source (or the values in force on a day)."""
    from billing.params import history, params_on

    with _database().session(write=False) as session:
        if on is not None:
            for name, value in sorted(params_on(session, on.date()).items()):
                click.echo(f"{name} = {value.normalize():f}")
            return
        for row in history(session):
            until = row.valid_to.isoformat() if row.valid_to else "…"
            click.echo(
                f"{row.name} = {row.value.normalize():f}  "
                f"{row.valid_from.isoformat()} – {until}  ({row.source})"
            )
