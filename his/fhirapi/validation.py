"""Validating FHIR JSON against the R4 (4.0.1) definitions: R4B models plus a shim.

fhir.resources 8.x ships no R4 package; its R4B (4.3.0) models accept 98.6% of the
official R4 examples (../shared/notes/FHIR.md §2). The shim closes the gap, and every
difference it handles was found by diffing the R4 StructureDefinitions of the
``hl7.fhir.r4.examples`` package against the R4B models, element by element:

- Primitive extensions on ``Extension.value[x]`` (``_valueString`` ...) are refused by
  the models (upstream nazrulworld/fhir.resources #204): they are moved aside and
  validated on their own as an ``Element`` (id + extension).
- ``Meta`` as a choice type (``Extension.valueMeta``, ``ElementDefinition.fixedMeta`` /
  ``patternMeta`` / ``defaultValueMeta`` / ``example.valueMeta``) exists only in R4:
  moved aside and validated as a ``Meta``.
- R4-only resource types (MedicinalProduct*, EffectEvidenceSynthesis,
  RiskEvidenceSynthesis, Substance{Specification,NucleicAcid,Polymer,Protein,
  ReferenceInformation,SourceMaterial}) and the types whose R4B model is a different
  structure (Evidence, EvidenceVariable, ExampleScenario) are refused as "not supported"
  instead of being validated against the wrong definition.
- R4B-only resource types (Citation, Ingredient, SubscriptionTopic ...), the R4B-only
  data types as a choice (``...CodeableReference``, ``...RatioRange``) and
  ``subjectCanonical`` (ActivityDefinition, PlanDefinition) are refused: an R4 reader
  cannot parse them.
- Codes with a required binding whose value set the model lists (``gender``,
  ``status`` ...) are checked against that list; the models carry the list but do not
  enforce it.

Not checked (no R4 engine offline): FHIRPath invariants, other terminology bindings,
profiles.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from flask_babel import gettext as _

from his.fhirapi.outcome import FhirError, issue

R4_ONLY_TYPES = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)
# Same name in both versions, different structure: the R4B model would judge wrongly.
R4B_RESHAPED_TYPES = frozenset({"Evidence", "EvidenceVariable", "ExampleScenario"})
R4B_ONLY_TYPES = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
    }
)
_R4B_ONLY_CHOICE = re.compile(r"^(value|defaultValue|fixed|pattern)(CodeableReference|RatioRange)$")
_R4B_ONLY_ELEMENTS = frozenset({"subjectCanonical"})
_R4_ONLY_META_CHOICE = frozenset({"valueMeta", "defaultValueMeta", "fixedMeta", "patternMeta"})
# CapabilityStatement.format: the model's list is parsed from prose ("formats", "mime").
_UNRELIABLE_CODE_LISTS = frozenset({"format"})
_EXTENSION_LISTS = frozenset({"extension", "modifierExtension"})
_PRIMITIVE_VALUE_EXTENSION = re.compile(r"^_value[A-Z][A-Za-z0-9]*$")
# Where a whole resource sits: contained, Bundle.entry.resource / response.outcome,
# Parameters.parameter(.part).resource.
_RESOURCE_POSITION = re.compile(
    r"(\.contained\[\d+\]|\.entry\[\d+\]\.resource|\.response\.outcome"
    r"|\.(parameter|part)\[\d+\]\.resource)$"
)
_ELEMENT_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9]*$")
_STRUCTURE_ERRORS = frozenset(
    {
        "extra_forbidden",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "is_instance_of",
    }
)


def issues(resource: Any, expected_type: str | None = None) -> list[dict[str, Any]]:
    """Every problem of ``resource`` as OperationOutcome issues; [] when it is valid R4."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [
            issue("error", "structure", _("The body must be a FHIR resource with a resourceType."))
        ]
    found_type = resource["resourceType"]
    if expected_type and found_type != expected_type:
        return [
            issue(
                "error",
                "invalid",
                _("The body is a %(found)s, not a %(expected)s.")
                % {"found": found_type, "expected": expected_type},
            )
        ]
    problems: list[dict[str, Any]] = []
    aside: list[tuple[str, str, Any]] = []
    prepared = _prepare(resource, found_type, None, problems, aside)
    if problems:  # a type we cannot judge: say so rather than a cascade of model errors
        return problems
    model = _model(found_type)
    try:
        validated = model.model_validate(prepared)
    except pydantic.ValidationError as exc:
        problems.extend(_from_pydantic(exc, found_type))
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # the models' own checks
        problems.append(_unparsable(found_type, exc))
    else:
        _check_codes(validated, found_type, problems)
    for path, kind, value in aside:
        try:
            _model(kind).model_validate(value)
        except pydantic.ValidationError as exc:
            problems.extend(_from_pydantic(exc, path))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            problems.append(_unparsable(path, exc))
    return problems


def _unparsable(path: str, exc: Exception) -> dict[str, Any]:
    return issue(
        "error",
        "structure",
        _("%(path)s is not valid: %(reason)s") % {"path": path, "reason": exc},
        [path],
    )


def validate(resource: Any, expected_type: str | None = None) -> None:
    """Raise a 400 FhirError with one issue per problem; return when the JSON is valid."""
    found = issues(resource, expected_type)
    if found:
        first, *rest = found
        raise FhirError(
            400,
            first["diagnostics"],
            code=first["code"],
            expression=first.get("expression"),
            issues=rest,
        )


def validate_output(resource: Any) -> list[dict[str, Any]]:
    """For tests of our own output: the issues of a resource (of whatever type it says)."""
    return issues(resource, None)


@cache
def _model(resource_type: str) -> type[FHIRAbstractModel]:
    return get_fhir_model_class(resource_type)


@cache
def _known(resource_type: str) -> bool:
    """A concrete resource type (not a data type, not Resource / DomainResource)."""
    if resource_type in ("Resource", "DomainResource"):
        return False
    try:
        model = _model(resource_type)
    except (ValueError, KeyError, AttributeError, ImportError, TypeError):
        return False
    return issubclass(model, _model("Resource"))


def _prepare(node: Any, path: str, parent_key: str | None, problems: list, aside: list) -> Any:
    """A copy of ``node`` with the R4-only parts moved to ``aside``; R4B-only or
    unsupported parts reported to ``problems``."""
    if isinstance(node, list):
        return [
            _prepare(item, f"{path}[{index}]", parent_key, problems, aside)
            for index, item in enumerate(node)
        ]
    if not isinstance(node, dict):
        return node
    resource_type = node.get("resourceType")
    if _RESOURCE_POSITION.search(path) and not isinstance(resource_type, str):
        problems.append(
            issue(
                "error",
                "structure",
                _("%(path)s must be a resource with a resourceType.") % {"path": path},
                [path],
            )
        )
        return node
    if isinstance(resource_type, str) and not _resource_type_ok(resource_type, path, problems):
        return node
    copy: dict[str, Any] = {}
    is_extension = parent_key in _EXTENSION_LISTS
    for key, value in node.items():
        child = f"{path}.{key.lstrip('_')}"
        if value is None or (
            isinstance(value, list) and None in value and _partner(key) not in node
        ):  # JSON null only pads a primitive array to line up with its _element array
            problems.append(
                issue(
                    "error",
                    "structure",
                    _("%(path)s: null is not allowed in FHIR JSON; leave the element out.")
                    % {"path": child},
                    [child],
                )
            )
            continue
        if _R4B_ONLY_CHOICE.match(key) or key in _R4B_ONLY_ELEMENTS:
            problems.append(
                issue(
                    "error",
                    "structure",
                    _("%(path)s is not an element of FHIR R4 (it was added in a later version).")
                    % {"path": child},
                    [child],
                )
            )
            continue
        if key in _R4_ONLY_META_CHOICE:
            aside.append((child, "Meta", _prepare(value, child, key, problems, aside)))
            continue
        if is_extension and _PRIMITIVE_VALUE_EXTENSION.match(key):
            aside.append((child, "Element", _prepare(value, child, key, problems, aside)))
            continue
        copy[key] = _prepare(value, child, key, problems, aside)
    return copy


def _partner(key: str) -> str:
    """``given`` ↔ ``_given``: the primitive array and its array of extensions."""
    return key[1:] if key.startswith("_") else f"_{key}"


def _resource_type_ok(resource_type: str, path: str, problems: list) -> bool:
    if resource_type in R4_ONLY_TYPES or resource_type in R4B_RESHAPED_TYPES:
        problems.append(
            issue(
                "error",
                "not-supported",
                _("The resource type %(type)s is not supported by this server's validation.")
                % {"type": resource_type},
                [path],
            )
        )
        return False
    if resource_type in R4B_ONLY_TYPES or not _known(resource_type):
        problems.append(
            issue(
                "error",
                "structure",
                _("%(type)s is not a FHIR R4 resource type.") % {"type": resource_type},
                [path],
            )
        )
        return False
    return True


def _expression(root: str, loc: tuple) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part != "root" and _ELEMENT_NAME.match(part):
            path += "." + part.lstrip("_")
    return path


def _from_pydantic(exc: pydantic.ValidationError, root: str) -> list[dict[str, Any]]:
    found = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        path = _expression(root, error["loc"])
        if kind.endswith("missing"):
            found.append(
                issue("error", "required", _("%(path)s is required.") % {"path": path}, [path])
            )
        elif kind == "extra_forbidden":
            found.append(
                issue(
                    "error",
                    "structure",
                    _("%(path)s is not an element of the FHIR R4 definition.") % {"path": path},
                    [path],
                )
            )
        else:
            code = "structure" if kind in _STRUCTURE_ERRORS or kind.endswith("_type") else "value"
            found.append(
                issue(
                    "error",
                    code,
                    _("%(path)s is not valid: %(reason)s") % {"path": path, "reason": error["msg"]},
                    [path],
                )
            )
    return found


def _check_codes(model: FHIRAbstractModel, path: str, problems: list) -> None:
    """Required bindings the R4B model lists but does not enforce."""
    allowed_of = _code_lists(type(model))
    for name in model.model_fields_set:  # only what the JSON gave: most elements are absent
        value = getattr(model, name, None)
        if value is None:
            continue
        element, allowed = allowed_of.get(name, (name, None))
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            child = f"{path}.{element}" + (f"[{index}]" if isinstance(value, list) else "")
            if isinstance(item, FHIRAbstractModel):
                _check_codes(item, child, problems)
            elif allowed and isinstance(item, str) and item not in allowed:
                problems.append(
                    issue(
                        "error",
                        "code-invalid",
                        _("%(path)s: %(code)s is not one of the allowed codes (%(allowed)s).")
                        % {"path": child, "code": item, "allowed": ", ".join(allowed)},
                        [child],
                    )
                )


@cache
def _code_lists(model: type[FHIRAbstractModel]) -> dict[str, tuple[str, list[str] | None]]:
    """field name → (JSON element name, the complete list of allowed codes or None)."""
    found = {}
    for name, field in model.model_fields.items():
        element = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        if allowed and ("+" in allowed or element in _UNRELIABLE_CODE_LISTS):
            allowed = None  # the model lists only the first few codes, or the wrong ones
        found[name] = (element, allowed)
    return found
