"""batch and transaction Bundles (``POST /fhir``).

A transaction is the request's one database transaction: every entry runs in it, and the
first entry that fails ends the request with that entry's OperationOutcome and status, so
the whole transaction is rolled back (``his.http`` rolls back every answer of 400 and
above). A batch runs each entry in a savepoint of its own: a failing entry is rolled back
alone and answered in its place.

Entries run in the order the specification gives (DELETE, POST, PUT/PATCH, GET); the
answer lists them in the order sent. ``urn:uuid:`` full URLs of created resources are
replaced by the ``Type/id`` they got, in the references of the entries that follow (and
in their URLs and ``ifNoneExist``); a POST that references another POST of the bundle runs
after it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, g, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from his.context import db_session
from his.errors import DomainError
from his.fhirapi import projection, writes
from his.fhirapi.blueprint import body_json, bp, from_domain_error, outcome_response
from his.fhirapi.bundle import Entry, base_url, bundle_text
from his.fhirapi.outcome import FhirError
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.wire import FHIR_JSON, etag, instant, respond

MAX_ENTRIES = 10_000
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    304: "304 Not Modified",
}
_URN = re.compile(r"urn:uuid:[0-9a-fA-F-]{36}|urn:oid:[0-9.]+")


@dataclass
class Job:
    index: int
    method: str
    url: str
    full_url: str | None
    resource: Any
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    needs: set[str] = field(default_factory=set)  # full URLs of POSTs it references


class EntryFailed(Exception):
    """A transaction entry failed: the transaction ends with this response."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


@bp.post("")
@bp.post("/")
def batch_or_transaction() -> Response:
    access = current_access()
    bundle = body_json()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, _("POST a Bundle of type batch or transaction to the base URL."))
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise FhirError(
            400,
            _("The Bundle's type must be batch or transaction, not %(type)s.") % {"type": kind},
            expression=["Bundle.type"],
        )
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FhirError(400, _("Bundle.entry must be a list."), expression=["Bundle.entry"])
    if len(raw_entries) > MAX_ENTRIES:
        raise FhirError(
            413,
            _("A Bundle may hold at most %(n)s entries.") % {"n": MAX_ENTRIES},
            expression=["Bundle.entry"],
        )
    jobs: list[Job | FhirError] = [_job(n, e) for n, e in enumerate(raw_entries)]
    seen: dict[str, int] = {}
    for job in jobs:
        if isinstance(job, Job) and job.full_url:
            if job.full_url in seen:
                # Two entries with one fullUrl make every reference to it ambiguous.
                raise FhirError(
                    400,
                    _("Entries %(first)s and %(second)s have the same fullUrl.")
                    % {"first": seen[job.full_url], "second": job.index},
                    expression=[f"Bundle.entry[{job.index}].fullUrl"],
                )
            seen[job.full_url] = job.index
    transaction = kind == "transaction"
    if transaction:
        for job in jobs:
            if isinstance(job, FhirError):
                return outcome_response(job)
    runner = _Runner(access, transaction)
    try:
        answers = runner.run(jobs)
    except EntryFailed as failed:
        return failed.response
    return respond(bundle_text(f"{kind}-response", answers))


def _job(n: int, entry: Any) -> Job | FhirError:
    where = f"Bundle.entry[{n}]"
    req = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return FhirError(
            400, _("Entry %(n)s has no request.method.") % {"n": n}, expression=[where]
        )
    method = req["method"].upper()
    url = req.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        return FhirError(
            400,
            _("Entry %(n)s: request.method and request.url are required.") % {"n": n},
            expression=[f"{where}.request"],
        )
    return Job(
        index=n,
        method=method,
        url=url,
        full_url=entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None,
        resource=entry.get("resource"),
        if_none_exist=req.get("ifNoneExist"),
        if_match=req.get("ifMatch"),
        if_none_match=req.get("ifNoneMatch"),
    )


class _Runner:
    def __init__(self, access: FhirAccess, transaction: bool):
        self.access = access
        self.transaction = transaction
        self.session = db_session()
        self.resolved: dict[str, str] = {}  # urn:uuid:... → Type/id
        # A transaction's creates, projected together at the end (a batch's entries are
        # each finished in their own savepoint).
        self.deferred: list[tuple[Job, writes.Written]] = []

    def run(self, jobs: list[Job | FhirError]) -> list[Entry]:
        answers: list[Entry | None] = [None] * len(jobs)
        for n, job in enumerate(jobs):
            if isinstance(job, FhirError):
                answers[n] = self._failed(job)
        for job in self._ordered([j for j in jobs if isinstance(j, Job)]):
            answers[job.index] = self._one(job)
        if self.deferred:
            writes.finish_deferred(self.session, self.access, [w for _j, w in self.deferred])
            for job, written in self.deferred:
                answers[job.index] = self._written(job, written)
        return [a for a in answers if a is not None]

    def _ordered(self, jobs: list[Job]) -> list[Job]:
        """The specification's order; POSTs after the POSTs whose full URL they name."""
        posts = [j for j in jobs if j.method == "POST"]
        created = {j.full_url for j in posts if j.full_url}
        for job in posts:
            job.needs = (set(_URN.findall(json.dumps(job.resource))) & created) - {job.full_url}
        ordered_posts: list[Job] = []
        done: set[str] = set()
        waiting = list(posts)
        while waiting:
            ready = [j for j in waiting if j.needs <= done]
            if not ready:
                raise FhirError(
                    400,
                    _("The entries' references form a cycle: %(urls)s.")
                    % {"urls": ", ".join(sorted(j.full_url or "" for j in waiting))},
                )
            for job in ready:
                ordered_posts.append(job)
                if job.full_url:
                    done.add(job.full_url)
            waiting = [j for j in waiting if j not in ready]
        others = sorted((j for j in jobs if j.method != "POST"), key=lambda j: _ORDER[j.method])
        return (
            [j for j in others if _ORDER[j.method] < 1]
            + ordered_posts
            + [j for j in others if _ORDER[j.method] > 1]
        )

    def _one(self, job: Job) -> Entry | None:
        try:
            if self.transaction or job.method in ("GET", "HEAD"):
                # GETs write nothing but their audit row: no savepoint needed in a batch.
                return self._execute(job)
            with self.session.begin_nested():
                return self._execute(job)
        except FhirError as error:
            failed = error
        except DomainError as error:
            failed = from_domain_error(error)
        if self.transaction:
            failed.extra_issues.append(
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": _(
                        "Entry %(n)s (%(method)s %(url)s) failed; nothing of the transaction "
                        "was stored."
                    )
                    % {"n": job.index, "method": job.method, "url": job.url},
                    "expression": [f"Bundle.entry[{job.index}]"],
                }
            )
            raise EntryFailed(outcome_response(failed))
        return self._failed(failed)

    def _failed(self, error: FhirError) -> Entry:
        if self.transaction:
            raise EntryFailed(outcome_response(error))
        return Entry(
            full_url=None,
            resource=None,
            response={"status": str(error.status), "outcome": error.outcome()},
        )

    def _execute(self, job: Job) -> Entry | None:
        url = self._resolve_text(job.url)
        path, _sep, query = _relative(url).partition("?")
        parts = [p for p in path.split("/") if p]
        resource = self._resolve(job.resource)
        if job.method in ("GET", "HEAD"):
            projection.sync(self.session)  # the reads see the entries written before
            return self._get(job, path, query)
        if job.method == "POST":
            if len(parts) != 1 or query:
                raise _bad_url(job)
            written = writes.create(
                self.session,
                self.access,
                parts[0],
                resource,
                if_none_exist=self._resolve_text(job.if_none_exist) if job.if_none_exist else None,
                defer=self.transaction,
            )
            if job.full_url and job.full_url.startswith("urn:"):
                self.resolved[job.full_url] = "/".join(written.key)
            if written.row is None and written.created and self.transaction:
                self.deferred.append((job, written))
                return None
            return self._written(job, written)
        if job.method == "DELETE":
            if not parts:
                raise _bad_url(job)
            raise writes.not_allowed(parts[0], parts[1] if len(parts) > 1 else None)
        if len(parts) != 2:
            if len(parts) == 1:  # conditional update / patch: not offered
                raise writes.not_allowed(parts[0], None)
            raise _bad_url(job)
        if job.method == "PUT":
            written = writes.update(
                self.session, self.access, parts[0], parts[1], resource, if_match=job.if_match
            )
        else:
            written = writes.patch(
                self.session,
                self.access,
                parts[0],
                parts[1],
                _patch_operations(job, resource),
                if_match=job.if_match,
            )
        return self._written(job, written)

    def _written(self, job: Job, written: writes.Written) -> Entry:
        response: dict[str, Any] = {
            "status": _STATUS_TEXT[written.status],
            "location": written.location(),
        }
        row = written.row
        if row is not None:
            response["etag"] = etag(row.version_id)
            response["lastModified"] = instant(row.last_updated)
        minimal = writes._prefer_return() == "minimal"
        return Entry(
            full_url=f"{base_url()}/{written.key[0]}/{written.key[1]}",
            resource=None if minimal or row is None else row.content,
            response=response,
        )

    def _get(self, job: Job, path: str, query: str) -> Entry:
        headers = {
            "Authorization": request.headers.get("Authorization", ""),
            "Accept": FHIR_JSON,
        }
        if job.if_none_match:
            headers["If-None-Match"] = job.if_none_match
        response = _dispatch_get(f"/fhir/{path.lstrip('/')}", query, headers)
        if response.status_code >= 400:
            body = response.get_json(silent=True) or {}
            if self.transaction:
                raise EntryFailed(response)
            return Entry(
                full_url=None,
                resource=None,
                response={"status": str(response.status_code), "outcome": body},
            )
        answer: dict[str, Any] = {
            "status": _STATUS_TEXT.get(response.status_code, str(response.status_code))
        }
        if response.headers.get("ETag"):
            answer["etag"] = response.headers["ETag"]
        text = response.get_data(as_text=True) if response.status_code == 200 else None
        return Entry(full_url=None, resource=text if job.method == "GET" else None, response=answer)

    def _resolve(self, node: Any) -> Any:
        if not self.resolved:
            return node
        if isinstance(node, dict):
            return {k: self._resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve(v) for v in node]
        if isinstance(node, str) and node in self.resolved:
            return self.resolved[node]
        return node

    def _resolve_text(self, text: str) -> str:
        if not self.resolved or "urn:" not in text:
            return text
        return _URN.sub(lambda m: self.resolved.get(m.group(0), m.group(0)), text)


def _relative(url: str) -> str:
    """``http://host/fhir/Patient/1?x`` or ``Patient/1?x`` → ``Patient/1?x``."""
    base = base_url()
    if url.startswith(base + "/"):
        return url[len(base) + 1 :]
    if "://" in url:
        parts = urlsplit(url)
        path = parts.path
        path = path[len("/fhir/") :] if path.startswith("/fhir/") else path.lstrip("/")
        return path + ("?" + parts.query if parts.query else "")
    return url.lstrip("/")


def _bad_url(job: Job) -> FhirError:
    return FhirError(
        400,
        _("Entry %(n)s: %(method)s %(url)s is not an interaction of a Bundle entry.")
        % {"n": job.index, "method": job.method, "url": job.url},
        expression=[f"Bundle.entry[{job.index}].request.url"],
    )


def _patch_operations(job: Job, resource: Any) -> Any:
    """A JSON Patch travels in a Bundle as a Binary of application/json-patch+json."""
    if (
        isinstance(resource, dict)
        and resource.get("resourceType") == "Binary"
        and resource.get("contentType") == "application/json-patch+json"
    ):
        try:
            return json.loads(base64.b64decode(resource.get("data") or "", validate=True))
        except (binascii.Error, ValueError) as error:
            raise FhirError(
                400,
                _("The Binary's data is not a base64 JSON Patch."),
                expression=[f"Bundle.entry[{job.index}].resource.data"],
            ) from error
    raise FhirError(
        415,
        _("Send the patch as a Binary resource of contentType application/json-patch+json."),
        code="not-supported",
        expression=[f"Bundle.entry[{job.index}].resource"],
    )


def _dispatch_get(path: str, query: str, headers: dict[str, str]) -> Response:
    """A read or search of the Bundle, run by the same views as a direct request, in this
    request's transaction (its database session and caller, kept on ``g``)."""
    app = current_app
    session = g.pop("db_session")
    try:
        with app.test_request_context(
            path, method="GET", query_string=query, headers=headers, base_url=request.host_url
        ):
            # The same app context, so the same ``g``: the view uses this session.
            g.db_session = session
            try:
                rv = app.dispatch_request()
                response = app.make_response(rv)
            except FhirError as error:
                response = outcome_response(error)
            except DomainError as error:
                response = outcome_response(from_domain_error(error))
            except HTTPException as error:
                response = outcome_response(
                    FhirError(error.code or 400, str(error.description or error.name))
                )
            finally:
                # Leaving the inner request runs the teardown, which would roll back and
                # close a session it finds on ``g``.
                g.pop("db_session", None)
    finally:
        g.db_session = session
    return response
