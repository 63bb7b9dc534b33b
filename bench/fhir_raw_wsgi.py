"""The machine's limit for ``bench/fhir_api.py``: a bare WSGI app serving the same stored
FHIR bytes with raw SQL, no framework, no auth, no audit row.

    BENCH_CONNINFO=postgresql://... gunicorn --chdir bench fhir_raw_wsgi:app

``/read/<type>/<id>``: the stored JSON by its key. ``/search/<kind>?...``: the stored JSON
of the first page of the same search the FHIR API runs (the same sub-selects on
``fhir_search_value``), spliced into a minimal searchset Bundle.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import parse_qs

import psycopg

_local = threading.local()

_PAGE = 20
_SEARCH = {
    # identifier=system|code
    "identifier": (
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'identifier' AND code = %(code)s AND system = %(system)s)"
    ),
    # family=x&given=y: folded text, starts-with
    "name": (
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'family' AND text LIKE %(family)s) "
        "AND rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'given' AND text LIKE %(given)s)"
    ),
    # birthdate=YYYY-MM-DD: the stored range within that day
    "birthdate": (
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'birthdate' AND start >= %(start)s AND \"end\" <= %(end)s)"
    ),
}


_HEAD = "SELECT content FROM fhir_resource WHERE resource_type = 'Patient' AND NOT deleted AND "
_TAIL = f" ORDER BY rid LIMIT {_PAGE}"
_STATEMENTS = {kind: _HEAD + where + _TAIL for kind, where in _SEARCH.items()}


def _connection() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["BENCH_CONNINFO"], autocommit=True)
        _local.conn = conn
    return conn


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    parts = path.strip("/").split("/")
    conn = _connection()
    if len(parts) == 3 and parts[0] == "read":
        row = conn.execute(
            "SELECT content FROM fhir_resource WHERE resource_type = %s AND resource_id = %s "
            "AND NOT deleted",
            (parts[1], parts[2]),
        ).fetchone()
        if row is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = row[0].encode()
    elif len(parts) == 2 and parts[0] == "search" and parts[1] in _SEARCH:
        args = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        rows = conn.execute(_STATEMENTS[parts[1]], args).fetchall()
        entries = ",".join('{"resource":' + r[0] + ',"search":{"mode":"match"}}' for r in rows)
        body = ('{"resourceType":"Bundle","type":"searchset","entry":[' + entries + "]}").encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/fhir+json; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
