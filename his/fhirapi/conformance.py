"""CodeSystem, ValueSet and StructureDefinition: the artefacts of the top-level ``fhir/``
folder (our extensions and Vietnamese code sets), served read-only.

The files are data shipped beside the code (the Dockerfile copies ``fhir/``), read once
per process. The ICD-10 VN CodeSystem is the exception: its file carries no codes
(``content: not-present``), and a read fills in the list in force from the ICD-10
catalogue, because that list is loaded per installation and changes by decree.

These routes name their type, so they take precedence over the generic
``/fhir/<type>/<id>`` routes of the projection.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Response, request
from flask_babel import gettext as _
from sqlalchemy import or_, select

from his.context import db_session
from his.fhirapi import searchparams, systems
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import Entry, base_url, bundle_text, full_url
from his.fhirapi.outcome import FhirError
from his.fhirapi.resource_types import CONFORMANCE
from his.fhirapi.security import current_access
from his.fhirapi.wire import dumps, instant, respond
from his.localtime import local_today
from his.models import Icd10Code, Icd10Version
from his.text import fold_vi

FHIR_DIR = Path(__file__).resolve().parents[2] / "fhir"
ICD10_VN_ID = "icd-10-vn"
VERSION_ID = "1"  # the files change only with a release of the server
ETAG = f'W/"{VERSION_ID}"'


@cache
def artefacts() -> dict[tuple[str, str], dict[str, Any]]:
    """(type, id) → resource, for every JSON file of ``fhir/``."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(FHIR_DIR.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("resourceType") in CONFORMANCE:
            found[(resource["resourceType"], resource["id"])] = resource
    return found


def by_url(url: str) -> dict[str, Any] | None:
    return next((r for r in artefacts().values() if r.get("url") == url), None)


def _with_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return (
        {"resourceType": resource["resourceType"], "id": resource["id"]}
        | {"meta": {"versionId": VERSION_ID, "lastUpdated": f"{resource['date']}T00:00:00Z"}}
        | {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
    )


def icd10_code_system(session, template: dict[str, Any]) -> dict[str, Any]:
    """The ICD-10 VN CodeSystem with the codes of the list in force today."""
    today = local_today()
    version = session.scalars(
        select(Icd10Version)
        .where(
            Icd10Version.valid_from <= today,
            or_(Icd10Version.valid_to.is_(None), Icd10Version.valid_to >= today),
        )
        .order_by(Icd10Version.valid_from.desc(), Icd10Version.id.desc())
        .limit(1)
    ).first()
    resource = dict(template)
    if version is None:
        resource["version"] = "none"
        return resource  # no list loaded: content stays "not-present"
    rows = session.execute(
        select(Icd10Code.code, Icd10Code.title_vi, Icd10Code.title_en)
        .where(Icd10Code.version_id == version.id)
        .order_by(Icd10Code.code)
    ).all()
    concepts = []
    for code, title_vi, title_en in rows:
        concept: dict[str, Any] = {"code": code, "display": title_vi or title_en}
        if title_vi and title_en:
            concept["designation"] = [{"language": "en", "value": title_en}]
        concepts.append(concept)
    resource.update(
        version=version.name,
        date=version.valid_from.isoformat(),
        content="fragment",
        count=len(concepts),
        concept=concepts,
    )
    if version.loaded_at:
        loaded = version.loaded_at
        if loaded.tzinfo is None:
            loaded = loaded.replace(tzinfo=dt.UTC)
        resource["date"] = instant(loaded)
        resource["meta"] = dict(resource["meta"], lastUpdated=instant(loaded))
    return resource


def _resolve(session, resource_type: str, resource_id: str) -> dict[str, Any]:
    found = artefacts().get((resource_type, resource_id))
    if found is None:
        raise FhirError(
            404,
            _("%(type)s/%(id)s is not known.") % {"type": resource_type, "id": resource_id},
        )
    resource = _with_meta(found)
    if resource_type == "CodeSystem" and found.get("url") == systems.ICD10_VN:
        resource = icd10_code_system(session, resource)
    return resource


def _read(resource_type: str, resource_id: str) -> Response:
    access = current_access()
    access.require(resource_type, "r")
    resource = _resolve(db_session(), resource_type, resource_id)
    headers = {"ETag": ETAG}
    if request.headers.get("If-None-Match") == ETAG and resource_type_is_static(resource):
        return Response(status=304, headers=headers)
    return respond(resource, 200, headers)


def resource_type_is_static(resource: dict[str, Any]) -> bool:
    """Whether the served JSON is the file's (the ICD-10 list changes with the catalogue)."""
    return resource.get("url") != systems.ICD10_VN


def _vread(resource_type: str, resource_id: str, version_id: str) -> Response:
    access = current_access()
    access.require(resource_type, "r")
    resource = _resolve(db_session(), resource_type, resource_id)
    if version_id != VERSION_ID:
        raise FhirError(
            404,
            _("%(type)s/%(id)s has no version %(version)s.")
            % {"type": resource_type, "id": resource_id, "version": version_id},
        )
    return respond(resource, 200, {"ETag": ETAG})


def _history(resource_type: str, resource_id: str | None) -> Response:
    access = current_access()
    access.require(resource_type, "r" if resource_id else "s")
    session = db_session()
    if resource_id is not None:
        ids = [resource_id]
        _resolve(session, resource_type, resource_id)
    else:
        ids = [i for (t, i) in artefacts() if t == resource_type]
    entries = [
        Entry(
            full_url=full_url(resource_type, i),
            resource=dumps(_resolve(session, resource_type, i)),
            request={"method": "PUT", "url": f"{resource_type}/{i}"},
            response={"status": "200", "etag": ETAG},
        )
        for i in ids
    ]
    return respond(bundle_text("history", entries, total=len(entries)))


def _declare_params() -> None:
    """The CapabilityStatement lists these (with _id and _lastUpdated) for the three types."""
    for resource_type in CONFORMANCE:
        searchparams.param(resource_type, "url", searchparams.URI, "url", doc="Canonical URL")
        searchparams.param(resource_type, "name", searchparams.STRING, "name")
        searchparams.param(resource_type, "title", searchparams.STRING, "title")
        searchparams.param(resource_type, "status", searchparams.TOKEN, "status")
        searchparams.param(resource_type, "version", searchparams.TOKEN, "version")


_declare_params()
STRING_PARAMS = ("name", "title")
TOKEN_PARAMS = ("url", "version", "status", "_id")
DATE_PARAMS = ("_lastUpdated",)
_DATE_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le)?(\d{4}(-\d{2}(-\d{2})?)?)")
IGNORED = ("_format", "_count", "_total", "_include", "_revinclude")  # nothing to include


def _bad(name: str, value: str) -> FhirError:
    return FhirError(
        400,
        _("The value %(value)s is not valid for the search parameter %(param)s.")
        % {"value": value, "param": name},
        expression=[name],
    )


def _check_param(resource_type: str, name: str, value: str) -> bool:
    """True when the parameter is understood; unknown ones are a 400 (ignored when the
    client asked for lenient handling)."""
    base, _sep, modifier = name.partition(":")
    known = (
        modifier == "missing"
        or (base in STRING_PARAMS and modifier in ("", "exact", "contains"))
        or (base in TOKEN_PARAMS + DATE_PARAMS and modifier == "")
    ) and base in STRING_PARAMS + TOKEN_PARAMS + DATE_PARAMS
    if not known:
        if "handling=lenient" in request.headers.get("Prefer", "").replace(" ", ""):
            return False
        raise FhirError(
            400,
            _("The search parameter %(param)s is not supported for %(type)s.")
            % {"param": name, "type": resource_type},
            expression=[name],
            code="not-supported",
        )
    wanted = [v for v in value.split(",") if v]
    if not wanted or (modifier == "missing" and value not in ("true", "false")):
        raise _bad(name, value)
    if (
        base in DATE_PARAMS
        and modifier != "missing"
        and not all(_DATE_PREFIX.match(v) for v in wanted)
    ):
        raise _bad(name, value)
    return True


def _value(resource: dict[str, Any], base: str) -> Any:
    if base == "_id":
        return resource.get("id")
    if base == "_lastUpdated":
        return resource["meta"]["lastUpdated"][:10]
    return resource.get(base)


def _matches(resource: dict[str, Any], name: str, value: str) -> bool:
    """One parameter: comma-separated values are OR-ed; repeated parameters AND-ed."""
    base, _sep, modifier = name.partition(":")
    wanted = [v for v in value.split(",") if v]
    have = _value(resource, base)
    if modifier == "missing":
        return (have in (None, "")) == (value == "true")
    if base in STRING_PARAMS:
        have = have or ""
        if modifier == "exact":
            return have in wanted
        folded = fold_vi(have)
        if modifier == "contains":
            return any(fold_vi(w) in folded for w in wanted)
        return any(folded.startswith(fold_vi(w)) for w in wanted)
    if base in DATE_PARAMS:  # the artefacts change by the day: compare the day
        return any(_date_matches(have, w) for w in wanted)
    if base == "url":  # a canonical may carry |version
        return any(
            have == w.split("|")[0]
            and ("|" not in w or resource.get("version") == w.split("|", 1)[1])
            for w in wanted
        )
    return have in wanted


def _date_matches(day: str, wanted: str) -> bool:
    found = _DATE_PREFIX.match(wanted)
    assert found is not None  # checked by _check_param
    prefix, moment = found.group(1) or "eq", found.group(2)
    have = day[: len(moment)]
    return {
        "eq": have == moment,
        "ne": have != moment,
        "gt": have > moment,
        "lt": have < moment,
        "ge": have >= moment,
        "le": have <= moment,
    }[prefix]


def _sorted(resources: list[dict[str, Any]], params: list[tuple[str, str]]):
    keys = [k for name, value in params if name == "_sort" for k in value.split(",") if k]
    for key in reversed(keys):  # stable sorts, last key first
        base = key.lstrip("-")
        if base not in STRING_PARAMS + TOKEN_PARAMS + DATE_PARAMS:
            raise _bad("_sort", key)
        present = [r for r in resources if _value(r, base) not in (None, "")]
        absent = [r for r in resources if _value(r, base) in (None, "")]
        present.sort(key=lambda r, b=base: str(_value(r, b)), reverse=key.startswith("-"))
        resources = present + absent  # missing values kept, last
    return resources


def _elements(resource: dict[str, Any], params: list[tuple[str, str]]) -> dict[str, Any]:
    wanted = {e for name, value in params if name == "_elements" for e in value.split(",") if e}
    if not wanted:
        return resource
    kept = {k: v for k, v in resource.items() if k in wanted | {"resourceType", "id", "meta"}}
    kept["meta"] = dict(
        resource["meta"],
        tag=[
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
            }
        ],
    )
    return kept


def _search(resource_type: str, params: list[tuple[str, str]]) -> Response:
    access = current_access()
    access.require(resource_type, "s")
    session = db_session()
    control = ("_sort", "_elements", "_summary", *IGNORED)
    kept = [
        (name, value)
        for name, value in params
        if name not in control and _check_param(resource_type, name, value)
    ]
    summary = next((v for k, v in params if k == "_summary"), "false")
    if summary not in ("true", "false", "count", "data", "text"):
        raise _bad("_summary", summary)
    found = [
        _resolve(session, resource_type, resource_id)
        for (kind, resource_id) in artefacts()
        if kind == resource_type
    ]
    found = [r for r in found if all(_matches(r, n, v) for n, v in kept)]
    found = _sorted(found, params)
    entries = []
    if summary != "count":
        entries = [
            Entry(
                full_url=full_url(resource_type, r["id"]),
                resource=dumps(_elements(r, params)),
                search_mode="match",
            )
            for r in found
        ]
    links = [
        ("self", f"{base_url()}/{resource_type}" + ("?" + urlencode(params) if params else ""))
    ]
    return respond(bundle_text("searchset", entries, links=links, total=len(found)))


def _register(resource_type: str) -> None:
    lower = resource_type.lower()

    def read(resource_id: str) -> Response:
        return _read(resource_type, resource_id)

    def vread(resource_id: str, version_id: str) -> Response:
        return _vread(resource_type, resource_id, version_id)

    def instance_history(resource_id: str) -> Response:
        return _history(resource_type, resource_id)

    def type_history() -> Response:
        return _history(resource_type, None)

    def search() -> Response:
        return _search(resource_type, list(request.args.items(multi=True)))

    def search_post() -> Response:
        params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
        return _search(resource_type, params)

    bp.add_url_rule(f"/{resource_type}/<resource_id>", f"{lower}_read", read, methods=["GET"])
    bp.add_url_rule(
        f"/{resource_type}/<resource_id>/_history/<version_id>",
        f"{lower}_vread",
        vread,
        methods=["GET"],
    )
    bp.add_url_rule(
        f"/{resource_type}/<resource_id>/_history",
        f"{lower}_instance_history",
        instance_history,
        methods=["GET"],
    )
    bp.add_url_rule(f"/{resource_type}/_history", f"{lower}_type_history", type_history)
    bp.add_url_rule(f"/{resource_type}", f"{lower}_search", search, methods=["GET"])
    bp.add_url_rule(
        f"/{resource_type}/_search", f"{lower}_search_post", search_post, methods=["POST"]
    )


for _type in CONFORMANCE:
    _register(_type)
