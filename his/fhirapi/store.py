"""Reading the projection: current rows, versions, history pages."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.fhirapi.outcome import FhirError
from his.fhirapi.security import FhirAccess
from his.models import FhirResource, FhirResourceVersion


def current(session: Session, resource_type: str, resource_id: str) -> FhirResource | None:
    return session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == resource_type,
            FhirResource.resource_id == resource_id,
        )
    ).one_or_none()


def visible(access: FhirAccess, row: FhirResource) -> bool:
    return access.sees_facility(row.facility_id)


def require_current(
    session: Session, access: FhirAccess, resource_type: str, resource_id: str
) -> FhirResource:
    """The live resource, or 404 (unknown or another facility's) / 410 (deleted)."""
    from flask_babel import gettext as _

    row = current(session, resource_type, resource_id)
    if row is None or not visible(access, row):
        raise FhirError(
            404,
            _("%(type)s/%(id)s does not exist.") % {"type": resource_type, "id": resource_id},
            code="not-found",
        )
    if row.deleted:
        raise FhirError(
            410,
            _("%(type)s/%(id)s was deleted.") % {"type": resource_type, "id": resource_id},
            code="deleted",
        )
    return row


def version(session: Session, row: FhirResource, version_id: int) -> FhirResourceVersion | None:
    return session.scalars(
        select(FhirResourceVersion).where(
            FhirResourceVersion.rid == row.rid, FhirResourceVersion.version_id == version_id
        )
    ).one_or_none()
