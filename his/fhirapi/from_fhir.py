"""Incoming FHIR JSON → the input the services take (the REST API's shape), and the way
back for their complaints: each service field name → the FHIRPath of the element it came
from, so a refused write names the element the client sent."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _

from his.errors import DomainError
from his.fhirapi import systems
from his.fhirapi.outcome import FhirError
from his.fhirapi.wire import is_number
from his.text import clean

# --- Patient ------------------------------------------------------------------------------

GENDERS = {"male": "male", "female": "female", "unknown": "undetermined", "other": "undetermined"}
# The service's typed identifier systems (``his.services.patients.TYPED_SYSTEMS``).
_TYPED = {systems.CMND: "cmnd", systems.PASSPORT: "passport"}


@dataclass
class PatientInput:
    """The service's input, and where each of its fields came from in the resource."""

    data: dict[str, Any]
    paths: dict[str, str] = field(default_factory=dict)
    bhyt: str | None = None  # the BHYT identifier as sent (compared with the stored one)


def _first(items: Any, prefer: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The first element (with ``use`` = the preferred one if any) and its index."""
    if not isinstance(items, list):
        return -1, {}
    dicts = [(n, i) for n, i in enumerate(items) if isinstance(i, dict)]
    if prefer:
        for n, item in dicts:
            if all(item.get(k) == v for k, v in prefer.items()):
                return n, item
    return dicts[0] if dicts else (-1, {})


def _ext(node: dict[str, Any], url: str) -> dict[str, Any] | None:
    for ext in node.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext
    return None


def _ext_code(node: dict[str, Any], url: str) -> str | None:
    ext = _ext(node, url)
    if ext is None:
        return None
    if "valueCode" in ext:
        return ext["valueCode"]
    if "valueString" in ext:
        return ext["valueString"]
    concept = ext.get("valueCodeableConcept") or {}
    coding = (concept.get("coding") or [{}])[0]
    if "valueCoding" in ext:
        coding = ext["valueCoding"]
    return coding.get("code")


def _phone(telecom: Any) -> str | None:
    for item in telecom or []:
        if isinstance(item, dict) and item.get("system") == "phone" and item.get("value"):
            return item["value"]
    return None


def patient_input(resource: dict[str, Any]) -> PatientInput:
    """A Patient as ``register_patient`` / ``update_patient`` take it. Every field is sent
    (an update replaces the resource): an absent element clears the stored value. The BHYT
    card and the MRN are the exceptions: a card is recorded as a Coverage and never
    removed through Patient, and the MRN is assigned here."""
    data: dict[str, Any] = {}
    paths: dict[str, str] = {}
    found = PatientInput(data=data, paths=paths)

    n, name = _first(resource.get("name"), {"use": "official"})
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family") if isinstance(name.get("family"), str) else None
    text = name.get("text") if isinstance(name.get("text"), str) else None
    parts = " ".join(p for p in [family, *given] if p)
    where = f"Patient.name[{max(n, 0)}]"
    if text and parts and clean(text).casefold() != clean(parts).casefold():
        # The name as on the ID card (text) is what the gateway checks; parts that do not
        # make it up would be stored apart from it and searched as another name.
        raise FhirError(
            422,
            _("The family and given names do not make up the full name (name.text)."),
            code="invariant",
            expression=[where],
        )
    data["full_name"] = text or parts
    data["family_name"] = family
    data["middle_name"] = " ".join(given[:-1]) or None
    data["given_name"] = given[-1] if given else None
    paths.update(
        full_name=where,
        family_name=f"{where}.family",
        middle_name=f"{where}.given",
        given_name=f"{where}.given",
    )

    gender = resource.get("gender")
    data["sex"] = GENDERS.get(gender, gender) if isinstance(gender, str) else None
    paths["sex"] = "Patient.gender"
    birth = resource.get("birthDate")
    data["birth_date"] = birth if isinstance(birth, str) else None
    paths["birth_date"] = "Patient.birthDate"

    data["cccd"] = ""
    identifiers: list[dict[str, str]] = []
    for i, item in enumerate(resource.get("identifier") or []):
        if not isinstance(item, dict):
            continue
        system, value = item.get("system") or "", item.get("value") or ""
        path = f"Patient.identifier[{i}]"
        if system == systems.CCCD:
            data["cccd"] = value
            paths["cccd"] = path
        elif system == systems.BHYT:
            found.bhyt = value
            data["insurance"] = {"card_number": value}
            paths["insurance"] = path
            paths["insurance.card_number"] = path
        elif system == systems.MRN:
            continue  # assigned here, never taken from outside
        else:
            paths[f"identifiers.{len(identifiers)}"] = path
            paths[f"identifiers.{len(identifiers)}.value"] = f"{path}.value"
            identifiers.append({"system": _TYPED.get(system, system), "value": value})
    data["identifiers"] = identifiers
    paths["identifiers"] = "Patient.identifier"

    data["phone"] = _phone(resource.get("telecom"))
    paths["phone"] = "Patient.telecom"
    data["ethnicity_code"] = _ext_code(resource, systems.ETHNICITY)
    paths["ethnicity_code"] = f"Patient.extension('{systems.ETHNICITY}')"
    data["occupation_code"] = _ext_code(resource, systems.OCCUPATION)
    paths["occupation_code"] = f"Patient.extension('{systems.OCCUPATION}')"

    n, address = _first(resource.get("address"), {"use": "home"})
    where = f"Patient.address[{max(n, 0)}]"
    lines = [x for x in address.get("line") or [] if isinstance(x, str)]
    data["address"] = {
        "line": ", ".join(lines) or None,
        "province_code": _ext_code(address, systems.ADMIN_PROVINCE),
        "commune_code": _ext_code(address, systems.ADMIN_COMMUNE),
    }
    paths["address"] = where
    paths["address.line"] = f"{where}.line"
    paths["address.province_code"] = f"{where}.extension('{systems.ADMIN_PROVINCE}')"
    paths["address.commune_code"] = f"{where}.extension('{systems.ADMIN_COMMUNE}')"

    n, contact = _first(resource.get("contact"))
    where = f"Patient.contact[{max(n, 0)}]"
    relation = _first(contact.get("relationship"))[1]
    contact_name = contact.get("name") if isinstance(contact.get("name"), dict) else {}
    guardian_name = contact_name.get("text") or " ".join(
        p
        for p in [contact_name.get("family"), *(contact_name.get("given") or [])]
        if isinstance(p, str)
    )
    data["guardian"] = {
        "name": guardian_name or None,
        "relation": relation.get("text")
        or ((relation.get("coding") or [{}])[0].get("display") if relation else None),
        "phone": _phone(contact.get("telecom")),
    }
    paths["guardian"] = where
    paths["guardian.name"] = f"{where}.name"
    paths["guardian.phone"] = f"{where}.telecom"
    paths["guardian.relation"] = f"{where}.relationship"
    paths["guardian.cccd"] = where
    return found


# --- errors -----------------------------------------------------------------------------------


def fhir_error(error: DomainError, paths: dict[str, str], resource_type: str) -> FhirError:
    """A service's refusal with each field named by the element it came from."""
    status = getattr(error, "status", 422)
    issues = []
    errors = getattr(error, "errors", None) or {}
    for name, messages in errors.items():
        expression = _path_of(name, paths, resource_type)
        for message in messages if isinstance(messages, list) else [messages]:
            issue: dict[str, Any] = {
                "severity": "error",
                "code": _ISSUE_CODES.get(status, "processing"),
                "diagnostics": str(message),
            }
            if expression:
                issue["expression"] = [expression]
            issues.append(issue)
    extra = getattr(error, "extra", None) or {}
    existing = extra.get("existing_patient")
    if isinstance(existing, dict):
        issues.append(_info(_("The existing record: Patient/%(id)s.") % {"id": existing["id"]}))
    for similar in extra.get("possible_duplicates") or []:
        issues.append(_info(_("A similar record: Patient/%(id)s.") % {"id": similar["id"]}))
    field_issues = [i for i in issues if i["severity"] == "error"]
    if field_issues:
        # The first problem leads, with its element, so a client that reads only the first
        # issue learns what to fix; the rest follow.
        first = field_issues[0]
        rest = [i for i in issues if i is not first]
        return FhirError(
            status,
            f"{error.detail} {first['diagnostics']}",
            code=first["code"],
            expression=first.get("expression"),
            issues=rest,
        )
    return FhirError(status, error.detail, issues=issues)


_ISSUE_CODES = {
    400: "invalid",
    403: "forbidden",
    404: "not-found",
    409: "duplicate",
    412: "conflict",
    422: "invariant",
}
_INDEXED = re.compile(r"\.\d+(?=\.|$)")


def _info(text: str) -> dict[str, Any]:
    return {"severity": "information", "code": "informational", "diagnostics": text}


def _path_of(name: str, paths: dict[str, str], resource_type: str) -> str | None:
    if name in ("role", "version"):
        return None
    if name in paths:
        return paths[name]
    head = name.split(".")[0]
    if head in paths:
        return paths[head]
    general = _INDEXED.sub("", name)
    return paths.get(general) or resource_type


# --- other creatable types ---------------------------------------------------------------------

_REFERENCE = re.compile(r"^(?:.*/)?([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


def reference(node: Any) -> tuple[str, str] | None:
    """``{"reference": "Type/id"}`` (or an absolute URL ending so) → (type, id)."""
    if not isinstance(node, dict) or not isinstance(node.get("reference"), str):
        return None
    match = _REFERENCE.match(node["reference"])
    return (match.group(1), match.group(2)) if match else None


def concept_text(node: Any) -> str | None:
    """A CodeableConcept as a person reads it: its text, else the first coding's display
    or code."""
    if not isinstance(node, dict):
        return None
    if isinstance(node.get("text"), str) and node["text"].strip():
        return node["text"].strip()
    for coding in node.get("coding") or []:
        if isinstance(coding, dict):
            for key in ("display", "code"):
                if isinstance(coding.get(key), str) and coding[key].strip():
                    return coding[key].strip()
    return None


def codes(node: Any) -> list[tuple[str | None, str]]:
    if not isinstance(node, dict):
        return []
    return [
        (c.get("system"), c["code"])
        for c in node.get("coding") or []
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def numeric_id(prefix: str, value: str, expression: str) -> int:
    """``r12`` with prefix ``r`` → 12, or a 422 naming the element."""
    rest = value[len(prefix) :] if value.startswith(prefix) else ""
    if not is_number(rest):
        raise FhirError(
            422,
            _("%(value)s is not a resource of this server.") % {"value": value},
            code="processing",
            expression=[expression],
        )
    return int(rest)


def observation_value(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """(value as text, unit) from value[x]."""
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and quantity.get("value") is not None:
        unit = quantity.get("unit") or quantity.get("code")
        return str(quantity["value"]), unit
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime", "valueTime"):
        if key in resource and resource[key] is not None:
            value = resource[key]
            return ("true" if value else "false") if isinstance(value, bool) else str(value), None
    if "valueCodeableConcept" in resource:
        return concept_text(resource["valueCodeableConcept"]), None
    return None, None


def reference_range(resource: dict[str, Any]) -> str | None:
    for item in resource.get("referenceRange") or []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("text"), str):
            return item["text"]
        low = (item.get("low") or {}).get("value")
        high = (item.get("high") or {}).get("value")
        if low is not None or high is not None:
            return f"{'' if low is None else low}–{'' if high is None else high}"
    return None


def check_patient_fields(found: PatientInput, *, create: bool) -> None:
    """The REST API's field rules (lengths, required full name) on the same input, so a
    FHIR write cannot store what the REST API refuses."""
    from his.api.patients import PatientCreateSchema, PatientInSchema
    from his.errors import ValidationFailed
    from his.validation_messages import translate_errors

    schema = PatientCreateSchema() if create else PatientInSchema()
    errors = schema.validate(found.data)
    if errors:
        flat = _flatten(translate_errors(errors))
        raise fhir_error(
            ValidationFailed(_("Some fields are not valid."), errors=flat), found.paths, "Patient"
        )


def _flatten(errors: dict[str, Any], prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return flat
