"""Typed SQLAlchemy models, one module per aggregate; imported here so metadata is complete."""

from his.models.admin_unit import AdminUnit, LegacyCommuneMap
from his.models.audit import AuditAction, AuditEvent, AuditOutcome
from his.models.counter import Counter
from his.models.coverage import BhytGroup, CardStatus, Coverage
from his.models.facility import CareLevel, Department, Facility, LegacyTier, Room
from his.models.merge import PatientMerge
from his.models.patient import (
    AllergySeverity,
    IdentifierType,
    Patient,
    PatientAllergy,
    PatientIdentifier,
    Sex,
)
from his.models.user import ApiToken, Role, User, UserRole
from his.models.visit import Payment, PriorityReason, Visit, VisitStatus, VisitType

__all__ = [
    "AdminUnit",
    "AllergySeverity",
    "ApiToken",
    "AuditAction",
    "AuditEvent",
    "AuditOutcome",
    "BhytGroup",
    "CardStatus",
    "CareLevel",
    "Counter",
    "Coverage",
    "Department",
    "Facility",
    "IdentifierType",
    "LegacyCommuneMap",
    "LegacyTier",
    "Patient",
    "PatientAllergy",
    "PatientIdentifier",
    "PatientMerge",
    "Payment",
    "PriorityReason",
    "Role",
    "Room",
    "Sex",
    "User",
    "UserRole",
    "Visit",
    "VisitStatus",
    "VisitType",
]
