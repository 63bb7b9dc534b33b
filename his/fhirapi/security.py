"""Who is calling the FHIR API, and what they may do.

Two kinds of caller: a machine client of SMART Backend Services (``his.fhirapi.smart``)
with the system scopes it was given and, optionally, the facilities it may see; and a
staff member with a token of ``/api/v1/auth/token``, whose scopes follow their roles: a
type is read and searched by the roles that read the same records through the REST API
and the screens, and written by the roles the writing service allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from flask_babel import gettext as _

from his.context import client_ip, db_session
from his.fhirapi import scopes as scope_rules
from his.fhirapi.outcome import FhirError
from his.models import Role
from his.services import auth
from his.services.access import AUDIT_ROLES, PATIENT_ROLES, REGISTRATION_ROLES, Principal
from his.services.encounters import CLINICAL_READ_ROLES, RESULT_ROLES
from his.services.prescriptions import READ_ROLES as PRESCRIPTION_READ_ROLES

# Staff with these roles may use the FHIR API with their own token.
STAFF_ROLES = frozenset(
    {
        Role.ADMIN,
        Role.DOCTOR,
        Role.NURSE,
        Role.PHARMACIST,
        Role.RECEPTIONIST,
        Role.CASHIER,
        Role.INTEGRATION,
        Role.AUDITOR,
    }
)

# Which staff roles read (r, s) each type: the same role groups as the services that read
# those records for the screens and the REST API, so a token does not reach through FHIR
# what the role is refused elsewhere (a cashier's clinical notes, an auditor's patients).
_DIRECTORY = tuple(STAFF_ROLES)
_CLAIM_ROLES = (Role.ADMIN, Role.CASHIER)  # billing.claim_files.CLAIM_ROLES
STAFF_READERS: dict[str, tuple[Role, ...]] = {
    "Patient": PATIENT_ROLES,
    "Coverage": PATIENT_ROLES,
    "AllergyIntolerance": PATIENT_ROLES,
    "Encounter": CLINICAL_READ_ROLES,
    "Condition": CLINICAL_READ_ROLES,
    "Observation": CLINICAL_READ_ROLES,
    "DiagnosticReport": CLINICAL_READ_ROLES,
    "ServiceRequest": CLINICAL_READ_ROLES,
    "MedicationRequest": PRESCRIPTION_READ_ROLES,
    "MedicationDispense": PRESCRIPTION_READ_ROLES,
    "Claim": _CLAIM_ROLES,
    "Group": (Role.ADMIN, Role.INTEGRATION),  # export groups, for data platforms
    "AuditEvent": AUDIT_ROLES,
    "Practitioner": _DIRECTORY,
    "PractitionerRole": _DIRECTORY,
    "Organization": _DIRECTORY,
    "Location": _DIRECTORY,
    "Medication": _DIRECTORY,
    "CodeSystem": _DIRECTORY,
    "ValueSet": _DIRECTORY,
    "StructureDefinition": _DIRECTORY,
}
# Who creates (c) and updates (u) the types that accept writes; the services check again.
STAFF_WRITERS: dict[str, tuple[str, tuple[Role, ...]]] = {
    "Patient": ("cu", REGISTRATION_ROLES),
    "AllergyIntolerance": ("c", REGISTRATION_ROLES),
    "Observation": ("c", RESULT_ROLES),
    "DiagnosticReport": ("c", RESULT_ROLES),
}


def staff_scopes(roles: frozenset[Role] | set[Role]) -> tuple[scope_rules.Scope, ...]:
    granted = [f"system/{t}.rs" for t, who in STAFF_READERS.items() if not roles.isdisjoint(who)]
    granted += [
        f"system/{t}.{letters}"
        for t, (letters, who) in STAFF_WRITERS.items()
        if not roles.isdisjoint(who)
    ]
    return tuple(scope_rules.parse_all(" ".join(granted)))


@dataclass(frozen=True)
class FhirAccess:
    principal: Principal  # acts in the services and is named in the audit trail
    scopes: tuple[scope_rules.Scope, ...]
    client_id: str | None = None  # a backend client's id; None for staff
    facility_ids: frozenset[int] | None = None  # None: every facility

    @property
    def owner(self) -> str:
        """A stable name for quotas and job ownership."""
        return f"client:{self.client_id}" if self.client_id else f"user:{self.principal.user_id}"

    def allows(self, resource_type: str, interaction: str) -> bool:
        return scope_rules.allows(list(self.scopes), resource_type, interaction)

    def require(self, resource_type: str, interaction: str) -> None:
        if not self.allows(resource_type, interaction):
            raise FhirError(
                403,
                _("The access token's scopes do not allow %(what)s on %(type)s.")
                % {"what": interaction, "type": resource_type},
                code="forbidden",
            )

    def sees_facility(self, facility_id: int | None) -> bool:
        return facility_id is None or self.facility_ids is None or facility_id in self.facility_ids


def unauthorized(detail: str) -> FhirError:
    return FhirError(
        401,
        detail,
        code="login",
        headers={"WWW-Authenticate": 'Bearer realm="his-fhir", error="invalid_token"'},
    )


def current_access() -> FhirAccess:
    """The caller of this request, authenticated once and kept on ``g``."""
    if "fhir_access" in g:
        return g.fhir_access
    header = request.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise FhirError(
            401,
            _("Send an access token: Authorization: Bearer <token>."),
            code="login",
            headers={"WWW-Authenticate": 'Bearer realm="his-fhir"'},
        )
    from his.fhirapi import smart

    access = smart.access_for_token(db_session(), token) or _staff_access(token)
    if access is None:
        raise unauthorized(_("The access token is unknown, expired or revoked."))
    g.fhir_access = access
    return access


def _staff_access(token: str) -> FhirAccess | None:
    user = auth.user_for_token(db_session(), token)
    if user is None or not user.active or STAFF_ROLES.isdisjoint(user.roles):
        return None
    principal = Principal.for_user(user, source_ip=client_ip(), request_id=g.get("request_id"))
    # Staff see the records of their own facility, as in the UI; the patient index is shared.
    return FhirAccess(
        principal=principal,
        scopes=staff_scopes(frozenset(user.roles)),
        facility_ids=frozenset({user.facility_id}),
    )
