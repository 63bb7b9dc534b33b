"""schemathesis against the REST API's own OpenAPI document, on SQLite and PostgreSQL.

Every operation the document lists is called with generated requests, valid and invalid
(a bounded budget here; ``make fuzz`` runs the long one), by each role in turn and
anonymously, with path ids both random and naming rows seeded at the caller's facility.
Each response must be no 5xx, of a documented status, content type and headers, and its
body must match the documented schema. The OpenAPI links (a created patient read and
patched, a created visit read, queued, examined and billed) are followed as chains.
"""

from __future__ import annotations

import copy
from collections import Counter

import schemathesis

from tests.security.api_fuzzing import (
    OPENAPI_PATH,
    Caller,
    Report,
    fuzz_links,
    fuzz_operations,
    load_schema,
    mint_token,
    seed,
)

# Cases per operation and generation mode (valid, invalid): ~240 requests per backend.
EXAMPLES = 2
STATEFUL_SCENARIOS = 10


def _caller(db_session, site) -> Caller:
    tokens = {role: mint_token(db_session, uid) for role, uid in site.user_ids.items()}
    return Caller(tokens, lambda role: mint_token(db_session, site.user_ids[role]))


def _failures(report: Report) -> str:
    return "\n\n".join(
        f"{f['operation']} [{f['check']}] {f.get('status')}\n{f['problem']}\n{f.get('request')}"
        f"\n{f.get('body')}"
        for f in report.failures
    )


def test_every_operation_answers_as_its_document_says(app, db_session):
    site = seed(db_session)
    caller = _caller(db_session, site)
    schema = load_schema(app)
    report = Report()
    fuzz_operations(schema, caller, site.ids, report, max_examples=EXAMPLES)

    assert report.failures == [], _failures(report)
    document = app.test_client().get(OPENAPI_PATH).get_json()
    labels = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    # Every operation of the document was called, and most reached past the role check.
    assert set(report.by_operation) == labels
    assert report.operations == len(labels) > 50
    assert report.statuses[500] == 0
    assert sum(n for status, n in report.statuses.items() if status < 300) > report.requests / 8
    # Each role and the anonymous caller met the API.
    assert set(caller.roles_used) == {*site.user_ids, "anonymous"}


def test_the_documents_links_chain_real_rows(app, db_session):
    site = seed(db_session)
    caller = _caller(db_session, site)
    report = Report()
    fuzz_links(load_schema(app), caller, site, report, steps=STATEFUL_SCENARIOS)

    assert report.failures == [], _failures(report)
    created = sum(
        report.by_operation.get(f"stateful POST /api/v1/{what}", Counter())[201]
        for what in ("patients", "visits")
    )
    # Rows created in a scenario were then used through the links, successfully.
    followed = sum(
        n
        for label, counts in report.by_operation.items()
        if label.startswith("stateful linked ")
        for status, n in counts.items()
        if status < 300
    )
    assert created > 0 and followed > 0, report.by_operation


def test_an_undocumented_answer_is_caught(app, db_session):
    """The harness can fail: with 404 taken out of the document, the 404 of a missing
    patient is reported as an undocumented status."""
    site = seed(db_session)
    document = copy.deepcopy(app.test_client().get(OPENAPI_PATH).get_json())
    del document["paths"]["/api/v1/patients/{patient_id}"]["get"]["responses"]["404"]
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    report = Report()
    fuzz_operations(
        schema,
        _caller(db_session, site),
        {},
        report,
        max_examples=6,
        only=lambda label: label == "GET /api/v1/patients/{patient_id}",
    )
    caught = {(f["check"], f["status"]) for f in report.failures}
    assert ("status_code_conformance", 404) in caught


def test_every_error_is_documented_as_problem_json(app):
    """No catch-all ``default`` response: each error status an operation can answer with
    is listed, as the problem+json it is, and those every call can meet are on every
    operation."""
    document = app.test_client().get(OPENAPI_PATH).get_json()
    shared = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            label = f"{method.upper()} {path}"
            assert "default" not in responses, label
            expected = {"400", "503"} | ({"401"} if operation.get("security") != [] else set())
            assert expected <= set(responses), label
            for status, response in responses.items():
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (
                        label,
                        status,
                    )
