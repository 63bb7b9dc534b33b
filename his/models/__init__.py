"""Typed SQLAlchemy models, one module per aggregate; imported here so metadata is complete."""

from his.models.admin_unit import AdminUnit, LegacyCommuneMap
from his.models.audit import AuditAction, AuditEvent, AuditOutcome
from his.models.catalog import (
    Drug,
    Icd10Code,
    Icd10Version,
    MedicalService,
    RxClass,
    ServiceKind,
    SexRestriction,
)
from his.models.counter import Counter
from his.models.coverage import BhytGroup, CardStatus, Coverage
from his.models.encounter import (
    Diagnosis,
    Disposition,
    Encounter,
    EncounterAmendment,
    EncounterStatus,
    ObservationResult,
    OrderStatus,
    ServiceOrder,
    VitalSigns,
)
from his.models.facility import CareLevel, Department, Facility, LegacyTier, Room
from his.models.fhir_access import FhirAccessToken, FhirClient, FhirJti
from his.models.fhir_export import FhirExportFile, FhirExportJob, FhirGroup, FhirGroupMember
from his.models.fhir_store import FhirResource, FhirResourceVersion, FhirSearchValue
from his.models.merge import PatientMerge
from his.models.patient import (
    AllergySeverity,
    IdentifierType,
    Patient,
    PatientAllergy,
    PatientIdentifier,
    Sex,
)
from his.models.prescription import (
    EPrescriptionSubmission,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    PrescriptionType,
    SubmissionStatus,
    TreatmentCourse,
)
from his.models.report import DiagnosticReport
from his.models.stock import (
    Dispense,
    DispenseKind,
    DispenseLine,
    MovementKind,
    StockLot,
    StockMovement,
    StockReceipt,
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
    "Diagnosis",
    "DiagnosticReport",
    "Dispense",
    "DispenseKind",
    "DispenseLine",
    "Disposition",
    "Drug",
    "EPrescriptionSubmission",
    "Encounter",
    "EncounterAmendment",
    "EncounterStatus",
    "Facility",
    "FhirAccessToken",
    "FhirClient",
    "FhirExportFile",
    "FhirExportJob",
    "FhirGroup",
    "FhirGroupMember",
    "FhirJti",
    "FhirResource",
    "FhirResourceVersion",
    "FhirSearchValue",
    "Icd10Code",
    "Icd10Version",
    "IdentifierType",
    "LegacyCommuneMap",
    "LegacyTier",
    "MedicalService",
    "MovementKind",
    "ObservationResult",
    "OrderStatus",
    "Patient",
    "PatientAllergy",
    "PatientIdentifier",
    "PatientMerge",
    "Payment",
    "Prescription",
    "PrescriptionItem",
    "PrescriptionStatus",
    "PrescriptionType",
    "PriorityReason",
    "Role",
    "Room",
    "RxClass",
    "ServiceKind",
    "ServiceOrder",
    "Sex",
    "SexRestriction",
    "StockLot",
    "StockMovement",
    "StockReceipt",
    "SubmissionStatus",
    "TreatmentCourse",
    "User",
    "UserRole",
    "Visit",
    "VisitStatus",
    "VisitType",
    "VitalSigns",
]
