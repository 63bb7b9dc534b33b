"""A GET that reads and then audits must not fail because another request committed
while it was reading (SQLite's deferred transactions do exactly that)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from his import create_app
from his.context import db_session
from his.db import Database
from his.migrate import upgrade
from his.models import AuditAction, AuditEvent, Facility
from his.services import audit
from his.services.access import Principal
from tests.conftest import settings_for


def test_a_read_request_can_audit_after_another_request_committed(backend, fresh_database):
    databases = fresh_database(backend)
    url = next(databases)
    try:
        upgrade(url)
        database = Database.from_url(url)
        app = create_app(settings_for(url), database=database)
        with app.test_request_context("/api/v1/patients/1", method="GET"):
            session = db_session()
            # The request reads first...
            session.scalar(select(func.count()).select_from(Facility))
            # ...another request writes meanwhile (on a thread: on SQLite it must wait for
            # our lock; it must not be lost either)...
            committed = {}

            def write_elsewhere() -> None:
                other = database.open_session(write=True)
                other.execute(text("UPDATE app_user SET locale = NULL WHERE 1 = 0"))
                audit.record(other, Principal.system("other"), AuditAction.SEARCH)
                other.commit()
                other.close()
                committed["done"] = True

            thread = threading.Thread(target=write_elsewhere)
            thread.start()
            # Give it time to commit if nothing holds it back: with a reader's deferred
            # transaction it would, and our audit write below would then fail.
            thread.join(timeout=2)
            # ...and then the read writes its audit row and commits.
            audit.record(session, Principal.system("reader"), AuditAction.READ)
            session.commit()
            session.close()
            thread.join(timeout=30)
        assert committed == {"done": True}
        with database.session(write=False) as check:
            names = set(check.scalars(select(AuditEvent.username)))
        assert {"reader", "other"} <= names
        database.engine.dispose()
    finally:
        databases.close()
