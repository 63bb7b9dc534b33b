"""Numbers handed out in order (MRN, visit code, queue number) from the ``counter`` table.

The increment is one atomic upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``) inside
the caller's transaction: PostgreSQL row-locks the counter until commit, SQLite holds its
write lock (write units of work begin IMMEDIATE), so concurrent registrations never get
the same number, and a rolled-back one leaves no gap.
"""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from his.models import Counter


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def next_value(session: Session, name: str) -> int:
    stmt = (
        _insert(session)(Counter)
        .values(name=name, value=1)
        .on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + 1})
        .returning(Counter.value)
    )
    return session.execute(stmt).scalar_one()


def ensure_at_least(session: Session, name: str, value: int) -> None:
    """Moves a counter past numbers that were given out some other way (demo data, imports)."""
    current = session.scalar(select(Counter.value).where(Counter.name == name))
    if current is None or current < value:
        stmt = (
            _insert(session)(Counter)
            .values(name=name, value=value)
            .on_conflict_do_update(index_elements=[Counter.name], set_={"value": value})
        )
        session.execute(stmt)


def ensure_all_at_least(session: Session, values: dict[str, int], chunk: int = 5000) -> None:
    """``ensure_at_least`` for many counters at once (a bulk load hands out numbers of
    thousands of days and rooms): one upsert per chunk that never lowers a counter."""
    names = sorted(values)
    for first in range(0, len(names), chunk):
        rows = [{"name": n, "value": values[n]} for n in names[first : first + chunk]]
        stmt = _insert(session)(Counter).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Counter.name],
            set_={
                "value": case(
                    (stmt.excluded.value > Counter.value, stmt.excluded.value),
                    else_=Counter.value,
                )
            },
        )
        session.execute(stmt)
