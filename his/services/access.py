"""Who is acting, and what they may do. Checked at the service boundary, not in views."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l

from his.errors import Forbidden
from his.models import Role, User


@dataclass(frozen=True)
class Principal:
    """The acting user plus where the request came from, for access checks and audit."""

    user_id: int | None
    username: str | None
    roles: frozenset[Role] = field(default_factory=frozenset)
    facility_id: int | None = None
    source_ip: str | None = None
    request_id: str | None = None

    @classmethod
    def for_user(
        cls, user: User, *, source_ip: str | None = None, request_id: str | None = None
    ) -> Principal:
        return cls(
            user_id=user.id,
            username=user.username,
            roles=frozenset(user.roles),
            facility_id=user.facility_id,
            source_ip=source_ip,
            request_id=request_id,
        )

    @classmethod
    def anonymous(cls, *, source_ip: str | None = None, request_id: str | None = None):
        return cls(user_id=None, username=None, source_ip=source_ip, request_id=request_id)

    @classmethod
    def system(cls, name: str = "system") -> Principal:
        """CLI jobs and background workers act as the system, with every role."""
        return cls(user_id=None, username=name, roles=frozenset(Role))

    def has_any(self, roles: Iterable[Role]) -> bool:
        return not self.roles.isdisjoint(roles)

    def require_any(self, *roles: Role) -> None:
        if not self.has_any(roles):
            raise Forbidden(
                str(_l("Your role does not allow this action.")),
                errors={"role": [", ".join(sorted(r.value for r in roles))]},
            )


# Roles that work with patients' clinical or administrative records.
PATIENT_ROLES = (
    Role.ADMIN,
    Role.RECEPTIONIST,
    Role.DOCTOR,
    Role.NURSE,
    Role.PHARMACIST,
    Role.CASHIER,
    Role.INTEGRATION,
)
AUDIT_ROLES = (Role.AUDITOR, Role.ADMIN)
# Who registers patients and opens visits: reception, and at commune stations the
# doctor or nurse on duty often does it too.
REGISTRATION_ROLES = (Role.ADMIN, Role.RECEPTIONIST, Role.NURSE, Role.DOCTOR, Role.INTEGRATION)
