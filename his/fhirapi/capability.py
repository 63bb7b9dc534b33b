"""``GET /fhir/metadata``: the CapabilityStatement, generated from what the server runs.

The resource types come from ``resource_types``, the search parameters from the same
registry the search engine uses (``searchparams.PARAMS`` plus ``_id``/``_lastUpdated``),
so a parameter is listed exactly when it works; the includes are every reference
parameter, and the interactions and operations are those the route modules serve.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from his.fhirapi import searchparams
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import base_url
from his.fhirapi.resource_types import AUDIT, CREATABLE, PROJECTED, SERVED, UPDATABLE
from his.fhirapi.search import COMMON
from his.fhirapi.wire import FHIR_VERSION, respond

SMART_OAUTH = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FHIR_SPEC = "http://hl7.org/fhir/OperationDefinition"
SEARCH_RESULT_PARAMS = (
    ("_count", "number", "Page size: default 20, at most 1000"),
    ("_sort", "string", "Sort keys, - for descending; resources without a value come last"),
    ("_include", "special", "Type:parameter[:target]"),
    ("_revinclude", "special", "Type:parameter[:target]"),
    ("_total", "token", "none (default) | estimate | accurate"),
    ("_summary", "token", "true | false | count | data | text"),
    ("_elements", "string", "Top-level elements to return"),
)
AUDIT_RESULT_PARAMS = (
    ("_count", "number", "Page size: default 20, at most 1000"),
    ("_sort", "string", "Only -date (newest first), the order of the trail"),
)


def capability_statement() -> dict[str, Any]:
    from his.db import utcnow
    from his.fhirapi.mappers import ALL_IDS  # noqa: F401  (registers every mapper's params)
    from his.fhirapi.wire import instant

    base = base_url()
    resources = [_resource(t) for t in SERVED]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(utcnow()),
        "publisher": "HIS",
        "kind": "instance",
        "software": {"name": "HIS FHIR API"},
        "implementation": {"description": "HIS FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": SMART_OAUTH,
                            "extension": [
                                {"url": "token", "valueUri": f"{base}/auth/token"},
                            ],
                        }
                    ],
                    "description": "SMART Backend Services (client_credentials, "
                    "private_key_jwt) or a staff token of /api/v1/auth/token.",
                },
                "resource": resources,
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "operation": [
                    {"name": "export", "definition": f"{FHIR_SPEC}/export"},
                ],
            }
        ],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    interactions = ["read", "vread", "history-instance", "history-type", "search-type"]
    if resource_type in CREATABLE:
        interactions.append("create")
    if resource_type in UPDATABLE:
        interactions += ["update", "patch"]
    declared = searchparams.params_of(resource_type)
    params = [
        {
            "name": p.name,
            "type": p.type,
            **({"documentation": p.documentation} if p.documentation else {}),
        }
        for p in (*COMMON.values(), *declared.values())
    ]
    # AuditEvent is searched by its own engine (his.fhirapi.audit_events): newest first.
    result_params = AUDIT_RESULT_PARAMS if resource_type in AUDIT else SEARCH_RESULT_PARAMS
    params += [
        {"name": name, "type": type_, "documentation": doc} for name, type_, doc in result_params
    ]
    found: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": params,
    }
    if resource_type in UPDATABLE:
        found["conditionalCreate"] = True
    references = [p for p in declared.values() if p.type == searchparams.REFERENCE]
    # AuditEvent is served from the audit trail, not the projection the includes read.
    if references and resource_type in PROJECTED:
        found["searchInclude"] = [f"{resource_type}:{p.name}" for p in references]
    pointing = sorted(
        f"{source}:{p.name}"
        for source, by_name in searchparams.PARAMS.items()
        for p in by_name.values()
        if p.type == searchparams.REFERENCE and resource_type in p.targets and source in PROJECTED
    )
    if pointing:
        found["searchRevInclude"] = pointing
    operations = []
    if resource_type == "Patient":
        operations += [
            {"name": "everything", "definition": f"{FHIR_SPEC}/Patient-everything"},
            {"name": "export", "definition": f"{FHIR_SPEC}/Patient-export"},
        ]
    if resource_type == "Group":
        operations.append({"name": "export", "definition": f"{FHIR_SPEC}/Group-export"})
    if operations:
        found["operation"] = operations
    return found


@bp.get("/metadata")
def metadata() -> Response:
    # Public, as FHIR requires: a client learns here how to authenticate.
    return respond(capability_statement())
