"""The machine's limit for ``bench/fhir_api.py``: a bare WSGI app serving the same stored
FHIR bytes with raw SQL, no framework, no auth, no audit row.

    BENCH_CONNINFO=postgresql://... gunicorn --chdir bench fhir_raw_wsgi:app

``/read/<type>/<id>``: the stored JSON by its key. ``/search/<kind>?...``: the stored JSON
of the first page of the same search the FHIR API runs (the same sub-selects on
``fhir_search_value``), spliced into a minimal searchset Bundle. The client gives the
values as the app would search for them (folded text, the UTC bounds of a day, the
user's facility), so no parsing is timed here.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import parse_qs

import psycopg

_local = threading.local()

_PAGE = 20
_SEARCH = {
    # Patient?identifier=system|code
    "identifier": (
        "Patient",
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'identifier' AND code = %(code)s AND system = %(system)s)",
    ),
    # Patient?family=x&given=y: folded text, starts-with
    "name": (
        "Patient",
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'family' AND text LIKE %(family)s) "
        "AND rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'given' AND text LIKE %(given)s)",
    ),
    # Patient?birthdate=YYYY-MM-DD: the stored range within that day
    "birthdate": (
        "Patient",
        "rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Patient' "
        "AND param = 'birthdate' AND start >= %(start)s AND \"end\" <= %(end)s)",
    ),
    # Encounter?patient=<id>&date=ge<d1>&date=le<d2>, as the user sees them (their facility's
    # and the shared ones). [ge_low, ge_high) and [le_low, le_high) are the two days: a
    # period ending after d1 (or within it), and one starting before d2 (or within it).
    "encounter": (
        "Encounter",
        "(facility_id IS NULL OR facility_id = %(facility)s) "
        "AND rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Encounter' "
        "AND param = 'patient' AND reference = %(patient)s) "
        "AND rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Encounter' "
        "AND param = 'date' AND (\"end\" > %(ge_high)s OR (start >= %(ge_low)s "
        'AND start < %(ge_high)s AND "end" <= %(ge_high)s))) '
        "AND rid IN (SELECT rid FROM fhir_search_value WHERE resource_type = 'Encounter' "
        "AND param = 'date' AND (start < %(le_low)s OR (start >= %(le_low)s "
        'AND start < %(le_high)s AND "end" <= %(le_high)s)))',
    ),
}


_HEAD = "SELECT content FROM fhir_resource WHERE NOT deleted AND resource_type = "
_TAIL = f" ORDER BY rid LIMIT {_PAGE}"
_STATEMENTS = {
    kind: _HEAD + f"'{resource_type}' AND " + where + _TAIL
    for kind, (resource_type, where) in _SEARCH.items()
}


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
