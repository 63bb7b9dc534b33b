"""``his hl7``: HL7 v2 peers, the MLLP listener and the outbound dispatcher.

Kept apart from ``his.cli``, which registers the group (``main.add_command(hl7)``).
"""

from __future__ import annotations

import click


def _database():
    # Imported late: his.cli imports this module to register the group.
    from his.cli import _database, _settings

    settings = _settings()
    return _database(settings), settings


def _domain_error(exc) -> click.ClickException:
    details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in (exc.errors or {}).items())
    return click.ClickException(f"{exc.detail} {details}".strip())


@click.group()
def hl7() -> None:
    """HL7 v2: the peers we exchange messages with, and the outbound dispatcher."""


@hl7.group()
def peer() -> None:
    """Systems we exchange HL7 v2 messages with (labs, pharmacies, provincial platforms)."""


def _peer_options(func):
    options = [
        click.option("--host", help="Where our messages go (none: inbound only)."),
        click.option("--port", type=int, help="MLLP port of the peer."),
        click.option("--events", help="Event classes it receives, comma-separated: ADT,OML,RDE."),
        click.option("--version", "version", help="HL7 version it speaks (2.3 … 2.8.2)."),
        click.option(
            "--facility",
            "facility_code",
            help="5-character code of the facility whose records it changes.",
        ),
        click.option("--sending-application", help="MSH-3 of its messages (default: NAME)."),
        click.option("--sending-facility", help="MSH-4 of its messages."),
        click.option("--mode", type=click.Choice(["apply", "store"]), help="Inbound handling."),
        click.option("--batch-ack", type=click.Choice(["each", "batch"]), help="Batch ACKs."),
        click.option("--identifier-map", help="PID-3 type codes, e.g. NNVNM=cccd,HC=bhyt."),
        click.option("--max-attempts", type=int, help="Tries before a dead letter."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _input(name: str | None, **options):
    from his.hl7v2.peers import PeerInput

    return PeerInput(name=name, **options)


@peer.command("add")
@click.argument("name")
@_peer_options
def peer_add(name: str, **options) -> None:
    """Add the peer NAME, e.g. --host lis.local --port 2575 --events OML --facility 91001
    (--facility may be left out where the deployment has one facility)."""
    from his.errors import DomainError
    from his.hl7v2.peers import add_peer
    from his.services.access import Principal

    if options.get("version") is None:
        options["version"] = "2.5.1"
    database, _ = _database()
    try:
        with database.session() as session:
            created = add_peer(session, Principal.system("cli"), _input(name, **options))
            line = _describe(created)
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"peer added: {line}")


@peer.command("update")
@click.argument("name")
@click.option("--rename", help="A new name.")
@_peer_options
def peer_update(name: str, rename: str | None, **options) -> None:
    """Change the settings given; the others stay as they are."""
    from his.errors import DomainError
    from his.hl7v2.peers import update_peer
    from his.services.access import Principal

    database, _ = _database()
    try:
        with database.session() as session:
            changed = update_peer(session, Principal.system("cli"), name, _input(rename, **options))
            line = _describe(changed)
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"peer updated: {line}")


@peer.command("list")
def peer_list() -> None:
    """Every peer with its address, events, version and state."""
    from his.hl7v2.peers import list_peers

    database, _ = _database()
    with database.session(write=False) as session:
        lines = [_describe(p) for p in list_peers(session)]
    if not lines:
        click.echo("no HL7 peers")
    for line in lines:
        click.echo(line)


@peer.command("disable")
@click.argument("name")
def peer_disable(name: str) -> None:
    """Stop sending to NAME (its queue is kept); messages from it are refused."""
    _set_active(name, False)


@peer.command("enable")
@click.argument("name")
def peer_enable(name: str) -> None:
    """Start sending to NAME again."""
    _set_active(name, True)


def _set_active(name: str, active: bool) -> None:
    from his.errors import DomainError
    from his.hl7v2.peers import set_active
    from his.services.access import Principal

    database, _ = _database()
    try:
        with database.session() as session:
            set_active(session, Principal.system("cli"), name, active)
    except DomainError as exc:
        raise _domain_error(exc) from exc
    click.echo(f"peer {name} {'enabled' if active else 'disabled'}")


def _describe(p) -> str:
    where = f"{p.host}:{p.port}" if p.host else "inbound only"
    state = "active" if p.active else "disabled"
    sender = f"{p.sending_application}/{p.sending_facility}".rstrip("/")
    return (
        f"{p.name}  {where}  events={p.events or '-'}  v{p.version}  "
        f"facility={p.facility.code}  sender={sender}  mode={p.mode.value}  "
        f"max_attempts={p.max_attempts}  {state}"
    )


@hl7.command("dispatch")
@click.option("--loop", is_flag=True, help="Keep sending, every --interval seconds.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between rounds")
@click.option("--limit", default=50, show_default=True, help="At most this many per round")
@click.option(
    "--with-parent",
    is_flag=True,
    help="Stop when the process that started this one exits (how `make run` starts it).",
)
def dispatch(loop: bool, interval: float, limit: int, with_parent: bool) -> None:
    """Send the outbound HL7 messages that are due; retry failed ones with backoff."""
    from his.hl7v2 import dispatcher

    database, settings = _database()
    dispatcher.run(
        database,
        settings,
        loop=loop,
        interval=interval,
        with_parent=with_parent,
        limit=limit,
        echo=click.echo,
    )


@hl7.command("listen")
@click.option(
    "--with-parent",
    is_flag=True,
    help="Stop when the process that started this one exits (how `make run` starts it).",
)
def listen(with_parent: bool) -> None:
    """Receive HL7 v2 over MLLP on HIS_MLLP_HOST:HIS_MLLP_PORT: store, acknowledge, apply."""
    from his.cli import _settings
    from his.hl7v2 import server

    server.run(_settings(), with_parent=with_parent)
