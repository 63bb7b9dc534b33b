"""Structured logs: JSON lines on stdout, a request id on every line, no patient data.

Configured before the app exists so gunicorn's, Werkzeug's and our own records all go
through the same processors.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# Keys that could carry personal or health data. Dropped from every log line: a log
# file leaves the hospital far more easily than the database does.
PHI_KEYS = frozenset(
    {
        "name",
        "full_name",
        "family_name",
        "given_name",
        "middle_name",
        "birth_date",
        "dob",
        "cccd",
        "cmnd",
        "bhyt",
        "identifier",
        "identifiers",
        "phone",
        "address",
        "password",
        "token",
        "query",
        "query_string",
        "q",
    }
)


def drop_phi(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in PHI_KEYS.intersection(event):
        event[key] = "[removed]"
    return event


# PostgreSQL's DETAIL line repeats the values a constraint refused ("Key (type, system, value)=
# (cccd, , 079190012345) already exists", "Failing row contains (...)"). The engine hides the
# statement's parameters (his.db); this keeps the server's own copy out of logged tracebacks.
_DB_DETAIL = re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE)


def drop_db_detail(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    text = event.get("exception")
    if isinstance(text, str) and "DETAIL:" in text:
        event["exception"] = _DB_DETAIL.sub(r"\1 [removed]", text)
    return event


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_phi,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            drop_db_detail,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Werkzeug's access line repeats the query string, which may hold a searched name;
    # our own request line (his.http) replaces it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
