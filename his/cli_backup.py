"""``his backup`` and ``his restore``: the database to a folder and back, verified.

Kept apart from ``his.cli``, which registers both commands.
"""

from __future__ import annotations

from pathlib import Path

import click


def _url() -> str:
    # Imported late: his.cli imports this module to register the commands.
    from his.cli import _settings

    return _settings().database_url


def _summary(verb: str, report) -> str:
    return (
        f"{verb} {report.backend} database, schema {report.revision or '(none)'}: "
        f"{len(report.tables)} tables, {report.rows:,} rows, every count and checksum recorded"
    )


@click.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def backup(dest: Path) -> None:
    """Back up the database named by HIS_DATABASE_URL into the new folder DEST while the
    service runs (SQLite: online backup API; PostgreSQL: pg_dump on one snapshot)."""
    from his.services.backup import BackupError
    from his.services.backup import backup as run_backup

    try:
        report = run_backup(_url(), dest)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_summary("backed up", report) + f" in {dest}")


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore(source: Path) -> None:
    """Restore the backup folder SOURCE into the empty database named by HIS_DATABASE_URL
    and check every table's row count and checksum against the backup's manifest."""
    from his.services.backup import BackupError
    from his.services.backup import restore as run_restore

    try:
        report = run_restore(_url(), source)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_summary("restored", report).replace("recorded", "verified"))
    click.echo("Run `his db upgrade` if this version of the HIS is newer than the backup.")
