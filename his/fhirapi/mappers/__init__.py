"""Domain rows → FHIR JSON, one module per area. Importing this package registers every
builder and trigger with ``his.fhirapi.projection`` and every search parameter with
``his.fhirapi.searchparams``.

Each module registers, per resource type: ``@builder(type)`` (build one resource from its
id), ``@trigger(Model, ...)`` (which resources a changed row shows up in) and
``ALL_IDS[type]`` (every id, for ``his fhir rebuild``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session

ALL_IDS: dict[str, Callable[[Session], Iterator[str]]] = {}


def ids_of(session: Session, resource_type: str) -> Iterator[str]:
    return ALL_IDS[resource_type](session)


# Imported last: each module registers itself and needs ALL_IDS above.
from his.fhirapi.mappers import (  # noqa: E402
    allergy,  # noqa: F401
    claim,  # noqa: F401
    coverage,  # noqa: F401
    encounter,  # noqa: F401
    group,  # noqa: F401
    medication,  # noqa: F401
    merge,  # noqa: F401
    observation,  # noqa: F401
    organization,  # noqa: F401
    patient,  # noqa: F401  (registers on import)
    practitioner,  # noqa: F401
)
