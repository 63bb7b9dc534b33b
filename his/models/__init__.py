"""Typed SQLAlchemy models, one module per aggregate; imported here so metadata is complete."""

from his.models.audit import AuditAction, AuditEvent, AuditOutcome
from his.models.facility import CareLevel, Department, Facility, LegacyTier, Room
from his.models.patient import IdentifierType, Patient, PatientIdentifier, Sex
from his.models.user import ApiToken, Role, User, UserRole
from his.models.visit import Visit, VisitStatus

__all__ = [
    "ApiToken",
    "AuditAction",
    "AuditEvent",
    "AuditOutcome",
    "CareLevel",
    "Department",
    "Facility",
    "IdentifierType",
    "LegacyTier",
    "Patient",
    "PatientIdentifier",
    "Role",
    "Room",
    "Sex",
    "User",
    "UserRole",
    "Visit",
    "VisitStatus",
]
