"""The access matrix: who may use each route of the app, and whose records they reach.

This module is documentation kept as data. The application does not read it: the services
check roles and facilities themselves (``his.services.access`` and the role tuples beside
each service). ``tests/security/test_access_matrix.py`` walks every route of the app for
every role and compares what happens with what is written here, and a route the matrix does
not name fails that test; ``docs/access-matrix.md`` is rendered from it
(``python -m his.access_matrix > docs/access-matrix.md``) for auditors.
"""

from __future__ import annotations

from dataclasses import dataclass

from his.models import Role

AD, RE, DO, NU = Role.ADMIN, Role.RECEPTIONIST, Role.DOCTOR, Role.NURSE
PH, CA, AU, IN = Role.PHARMACIST, Role.CASHIER, Role.AUDITOR, Role.INTEGRATION

# Role groups, named as in the services that check them.
STAFF = frozenset(Role)  # any logged-in user
PATIENT = frozenset({AD, RE, DO, NU, PH, CA, IN})  # access.PATIENT_ROLES
REGISTRATION = frozenset({AD, RE, NU, DO, IN})  # access.REGISTRATION_ROLES
CLINICAL_READ = frozenset({DO, NU, PH, IN})  # encounters.CLINICAL_READ_ROLES
WORKLIST = frozenset({DO, NU})  # encounters.WORKLIST_ROLES / VITALS_ROLES
DOCTOR = frozenset({DO})  # encounters.DOCTOR_ROLES, prescriptions.PRESCRIBER_ROLES
RESULT = frozenset({DO, NU, IN})  # encounters.RESULT_ROLES
RX_READ = frozenset({AD, DO, NU, PH, IN})  # prescriptions.READ_ROLES
PHARMACY = frozenset({AD, PH})  # stock.PHARMACY_READ_ROLES / RECEIVING_ROLES
DISPENSING = frozenset({PH})  # stock.DISPENSING_ROLES
STOCK_READ = frozenset({AD, PH, DO, NU})  # stock.STOCK_READ_ROLES
CASHIER = frozenset({AD, CA})  # payments.CASHIER_ROLES, bills.BILL_ROLES, claim_files.CLAIM_ROLES
CHARGE = frozenset({AD, CA, DO, NU})  # charges.CHARGE_ROLES
NOTIFY = frozenset({AD, CA, IN})  # a bank's transfer notice: cashier roles or an integration
AUDIT = frozenset({AD, AU})  # access.AUDIT_ROLES
ADMIN = frozenset({AD})

# What a route's records are, and which facility's a user reaches.
NO_RECORD = "no patient record"
OWN = "own facility; another facility's record is answered 404"
SHARED = "shared patient index: every facility"
OWN_LIST = "lists the user's own facility only"
CATALOG = "catalogs, settings or directories"
EVERYTHING = (
    "the shared Patient, with only the records of the user's own facility and of the types "
    "the user may read"
)

AUDIT_TRAIL = (
    "own facility and the facilities under it, and events tied to no facility "
    "(a failed login with an unknown username)"
)
HL7_ALL = "every facility's HL7 messages: the interface operator's view (see cross-facility)"
FHIR_GENERIC = "per resource type: see the FHIR table"
BUILDER = "the prescription form, read-only in effect: saving it needs the doctor role"

GROUPS = {
    "any logged-in user": STAFF,
    "patient roles": PATIENT,
    "registration roles": REGISTRATION,
    "clinical readers": CLINICAL_READ,
    "doctor, nurse": WORKLIST,
    "doctor": DOCTOR,
    "result roles": RESULT,
    "prescription readers": RX_READ,
    "admin, pharmacist": PHARMACY,
    "pharmacist": DISPENSING,
    "stock readers": STOCK_READ,
    "admin, cashier": CASHIER,
    "charge roles": CHARGE,
    "admin, cashier, integration": NOTIFY,
    "admin, auditor": AUDIT,
    "admin": ADMIN,
}


@dataclass(frozen=True)
class Access:
    """Who may use one route with one method.

    ``roles`` None: no login needed. ``offered`` False: the interaction is not offered at
    all and every caller gets 405 (FHIR deletes, conditional writes).
    """

    roles: frozenset[Role] | None
    records: str = NO_RECORD
    note: str = ""
    offered: bool = True


PUBLIC = Access(None)


def _a(roles, records=NO_RECORD, note=""):
    return Access(frozenset(roles), records, note)


# (url rule, method) -> Access. Every rule of app.url_map except HEAD/OPTIONS.
ROUTES: dict[tuple[str, str], Access] = {
    # --- public: health, login, API description, static files --------------------------------
    ("/healthz", "GET"): PUBLIC,
    ("/readyz", "GET"): PUBLIC,
    ("/login", "GET"): PUBLIC,
    ("/login", "POST"): Access(None, note="checks the password; failures are audited"),
    ("/favicon.ico", "GET"): PUBLIC,
    ("/static/<path:filename>", "GET"): PUBLIC,
    ("/api/docs", "GET"): PUBLIC,
    ("/api/docs/assets/<path:filename>", "GET"): PUBLIC,
    ("/api/openapi.json", "GET"): PUBLIC,
    ("/api/v1/auth/token", "POST"): Access(None, note="checks the password; failures are audited"),
    ("/fhir/metadata", "GET"): PUBLIC,
    ("/fhir/.well-known/smart-configuration", "GET"): PUBLIC,
    ("/fhir/auth/token", "POST"): Access(
        None, note="SMART Backend Services: a registered client's signed assertion"
    ),
    # --- web: every logged-in user -----------------------------------------------------------
    ("/", "GET"): _a(STAFF, note="the home screen shows the panels of the user's roles"),
    ("/logout", "POST"): _a(STAFF),
    ("/reauth", "GET"): _a(STAFF, note="asks for the password again before an admin action"),
    ("/reauth", "POST"): _a(STAFF),
    # --- web: reception ----------------------------------------------------------------------
    ("/reception/", "GET"): _a(STAFF, note="the empty search screen"),
    ("/reception/search", "POST"): _a(PATIENT, SHARED, note="the query in the body, not the URL"),
    ("/reception/patients/new", "GET"): _a(STAFF, note="an empty form; saving it needs a role"),
    ("/reception/patients/new", "POST"): _a(REGISTRATION, SHARED),
    ("/reception/patients/<int:patient_id>/edit", "GET"): _a(PATIENT, SHARED),
    ("/reception/patients/<int:patient_id>/edit", "POST"): _a(REGISTRATION, SHARED),
    ("/reception/patients/<int:patient_id>/visit", "GET"): _a(PATIENT, SHARED),
    ("/reception/patients/<int:patient_id>/visit", "POST"): _a(
        REGISTRATION, SHARED, "the visit is opened at the user's own facility"
    ),
    ("/reception/visits/<int:visit_id>/slip", "GET"): _a(PATIENT, OWN),
    ("/queues/", "GET"): _a(PATIENT, OWN_LIST),
    ("/queues/<int:room_id>/board", "GET"): _a(PATIENT, OWN),
    ("/queues/<int:room_id>/board/live", "GET"): _a(PATIENT, OWN),
    # --- web: doctor and nurse ---------------------------------------------------------------
    ("/doctor/", "GET"): _a(WORKLIST, OWN_LIST),
    ("/doctor/rooms/<int:room_id>", "GET"): _a(WORKLIST, OWN),
    ("/doctor/rooms/<int:room_id>/list", "GET"): _a(WORKLIST, OWN),
    ("/doctor/rooms/<int:room_id>/call-next", "POST"): _a(WORKLIST, OWN),
    ("/doctor/visits/<int:visit_id>/start", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>", "GET"): _a(CLINICAL_READ, OWN),
    ("/doctor/encounters/<int:encounter_id>/notes", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/amend", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/vitals", "POST"): _a(WORKLIST, OWN),
    ("/doctor/encounters/<int:encounter_id>/diagnoses", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/diagnoses/amend", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/diagnoses/<int:diagnosis_id>/remove", "POST"): _a(
        DOCTOR, OWN
    ),
    ("/doctor/encounters/<int:encounter_id>/disposition/amend", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/finish", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/orders", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/orders/<int:order_id>/cancel", "POST"): _a(DOCTOR, OWN),
    ("/doctor/encounters/<int:encounter_id>/orders/<int:order_id>/result", "POST"): _a(RESULT, OWN),
    ("/doctor/icd10", "GET"): _a(DOCTOR, CATALOG),
    ("/doctor/services", "GET"): _a(DOCTOR, CATALOG),
    ("/doctor/prescriptions/new", "GET"): _a(RX_READ, OWN, BUILDER),
    ("/doctor/prescriptions/new", "POST"): _a(DOCTOR, OWN),
    ("/doctor/prescriptions/check", "POST"): _a(DOCTOR, OWN),
    ("/doctor/prescriptions/drugs", "GET"): _a(STAFF, CATALOG, "drug catalog suggestions"),
    ("/doctor/prescriptions/<int:prescription_id>", "GET"): _a(RX_READ, OWN),
    ("/doctor/prescriptions/<int:prescription_id>/print", "GET"): _a(RX_READ, OWN),
    ("/doctor/prescriptions/<int:prescription_id>/edit", "GET"): _a(RX_READ, OWN, BUILDER),
    ("/doctor/prescriptions/<int:prescription_id>/edit", "POST"): _a(DOCTOR, OWN),
    ("/doctor/prescriptions/<int:prescription_id>/replace", "GET"): _a(RX_READ, OWN, BUILDER),
    ("/doctor/prescriptions/<int:prescription_id>/replace", "POST"): _a(DOCTOR, OWN),
    ("/doctor/prescriptions/<int:prescription_id>/sign", "POST"): _a(DOCTOR, OWN),
    # --- web: pharmacy -----------------------------------------------------------------------
    ("/pharmacy/", "GET"): _a(PHARMACY, OWN_LIST),
    ("/pharmacy/queue/rows", "GET"): _a(PHARMACY, OWN_LIST),
    ("/pharmacy/prescriptions/<int:prescription_id>", "GET"): _a(PHARMACY, OWN),
    ("/pharmacy/prescriptions/<int:prescription_id>/dispense", "POST"): _a(DISPENSING, OWN),
    ("/pharmacy/prescriptions/<int:prescription_id>/returns", "POST"): _a(DISPENSING, OWN),
    ("/pharmacy/stock", "GET"): _a(STOCK_READ, OWN_LIST),
    ("/pharmacy/stock/receive", "GET"): _a(PHARMACY, OWN_LIST),
    ("/pharmacy/stock/receive", "POST"): _a(PHARMACY, OWN_LIST),
    # --- web: cashier and claims -------------------------------------------------------------
    ("/cashier/", "GET"): _a(CASHIER, OWN_LIST),
    ("/cashier/", "POST"): _a(CASHIER, OWN, note="a visit code, in the body, opens its bill"),
    ("/cashier/rows", "GET"): _a(CASHIER, OWN_LIST),
    ("/cashier/visits/<int:visit_id>", "GET"): _a(CASHIER, OWN),
    ("/cashier/visits/<int:visit_id>/bills/<int:bill_id>/payments", "POST"): _a(CASHIER, OWN),
    ("/cashier/visits/<int:visit_id>/payments/<int:payment_id>/refund", "POST"): _a(CASHIER, OWN),
    ("/cashier/payments/<int:payment_id>/receipt", "GET"): _a(CASHIER, OWN),
    ("/claims/", "GET"): _a(CASHIER, OWN_LIST),
    ("/claims/<int:file_id>/resend", "POST"): _a(CASHIER, OWN),
    # --- web: administration -----------------------------------------------------------------
    ("/admin/billing/params", "GET"): _a(ADMIN, CATALOG),
    ("/admin/billing/params", "POST"): _a(ADMIN, CATALOG),
    ("/admin/fhir-clients/", "GET"): _a(ADMIN, CATALOG),
    ("/admin/fhir-clients/", "POST"): _a(ADMIN, CATALOG),
    ("/admin/fhir-clients/<client_id>/<any(disable, enable):action>", "POST"): _a(ADMIN, CATALOG),
    ("/admin/hl7/", "GET"): _a(ADMIN, HL7_ALL),
    ("/admin/hl7/", "POST"): _a(ADMIN, HL7_ALL),
    ("/admin/hl7/<any(in, out):direction>/<int:message_id>", "GET"): _a(ADMIN, HL7_ALL),
    ("/admin/hl7/out/<int:message_id>/<any(resend, discard):action>", "POST"): _a(ADMIN, HL7_ALL),
    ("/admin/hl7/peers", "GET"): _a(ADMIN, CATALOG),
    ("/admin/hl7/peers", "POST"): _a(ADMIN, CATALOG),
    ("/admin/hl7/peers/<int:peer_id>/<any(disable, enable):action>", "POST"): _a(ADMIN, CATALOG),
    # --- REST --------------------------------------------------------------------------------
    ("/api/v1/auth/logout", "POST"): _a(STAFF, note="revokes the bearer token sent"),
    ("/api/v1/me", "GET"): _a(STAFF),
    ("/api/v1/facilities", "GET"): _a(STAFF, CATALOG),
    ("/api/v1/catalogs/<string:kind>", "GET"): _a(STAFF, CATALOG, "an unknown catalog: 404"),
    ("/api/v1/catalogs/drugs", "GET"): _a(STAFF, CATALOG),
    ("/api/v1/catalogs/icd10", "GET"): _a(STAFF, CATALOG),
    ("/api/v1/catalogs/services", "GET"): _a(STAFF, CATALOG),
    ("/api/v1/billing/params", "GET"): _a(STAFF, CATALOG),
    ("/api/v1/billing/params", "POST"): _a(ADMIN, CATALOG),
    ("/api/v1/audit-events", "GET"): _a(AUDIT, AUDIT_TRAIL),
    ("/api/v1/patients", "GET"): _a(PATIENT, SHARED),
    ("/api/v1/patients/search", "POST"): _a(
        PATIENT, SHARED, note="the GET's search with the query in the body, not the URL"
    ),
    ("/api/v1/patients", "POST"): _a(REGISTRATION, SHARED),
    ("/api/v1/patients/<int:patient_id>", "GET"): _a(PATIENT, SHARED),
    ("/api/v1/patients/<int:patient_id>", "PATCH"): _a(REGISTRATION, SHARED),
    ("/api/v1/patients/<int:patient_id>/insurance/check", "POST"): _a(REGISTRATION, SHARED),
    ("/api/v1/patients/<int:patient_id>/merge", "POST"): _a(ADMIN, SHARED),
    ("/api/v1/patient-merges/<int:merge_id>/undo", "POST"): _a(ADMIN, SHARED),
    ("/api/v1/rooms", "GET"): _a(PATIENT, OWN_LIST),
    ("/api/v1/queues/<int:room_id>", "GET"): _a(PATIENT, OWN),
    ("/api/v1/visits", "GET"): _a(PATIENT, OWN_LIST),
    ("/api/v1/visits", "POST"): _a(REGISTRATION, OWN),
    ("/api/v1/visits/<int:visit_id>", "GET"): _a(PATIENT, OWN),
    ("/api/v1/visits/<int:visit_id>/encounters", "GET"): _a(CLINICAL_READ, OWN),
    ("/api/v1/visits/<int:visit_id>/encounters", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/visits/<int:visit_id>/bill", "GET"): _a(CASHIER, OWN),
    ("/api/v1/visits/<int:visit_id>/charges", "POST"): _a(CHARGE, OWN),
    ("/api/v1/worklist", "GET"): _a(WORKLIST, OWN),
    ("/api/v1/worklist/call-next", "POST"): _a(WORKLIST, OWN),
    ("/api/v1/encounters/<int:encounter_id>", "GET"): _a(CLINICAL_READ, OWN),
    ("/api/v1/encounters/<int:encounter_id>", "PATCH"): _a(DOCTOR, OWN),
    ("/api/v1/encounters/<int:encounter_id>/vitals", "POST"): _a(WORKLIST, OWN),
    ("/api/v1/encounters/<int:encounter_id>/diagnoses", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/encounters/<int:encounter_id>/diagnoses/<int:diagnosis_id>", "DELETE"): _a(
        DOCTOR, OWN
    ),
    ("/api/v1/encounters/<int:encounter_id>/finish", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/encounters/<int:encounter_id>/orders", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/encounters/<int:encounter_id>/orders/<int:order_id>/cancel", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/orders/<int:order_id>/result", "POST"): _a(RESULT, OWN),
    ("/api/v1/encounters/<int:encounter_id>/prescriptions", "GET"): _a(RX_READ, OWN),
    ("/api/v1/encounters/<int:encounter_id>/prescriptions", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/encounters/<int:encounter_id>/prescriptions/check", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>", "GET"): _a(RX_READ, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>", "PATCH"): _a(DOCTOR, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/sign", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/cancel", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/replace", "POST"): _a(DOCTOR, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/dispense-plan", "GET"): _a(PHARMACY, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/dispenses", "GET"): _a(PHARMACY, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/dispense", "POST"): _a(DISPENSING, OWN),
    ("/api/v1/prescriptions/<int:prescription_id>/returns", "POST"): _a(DISPENSING, OWN),
    ("/api/v1/dispensing/queue", "GET"): _a(PHARMACY, OWN_LIST),
    ("/api/v1/stock", "GET"): _a(STOCK_READ, OWN_LIST),
    ("/api/v1/stock/receipts", "POST"): _a(PHARMACY, OWN_LIST),
    ("/api/v1/bills/<int:bill_id>/payments", "POST"): _a(CASHIER, OWN),
    ("/api/v1/payments/<int:payment_id>/refund", "POST"): _a(CASHIER, OWN),
    ("/api/v1/payments/notify", "POST"): _a(NOTIFY, OWN, "matched by the VietQR reference"),
    ("/api/v1/charges/<int:charge_id>/cancel", "POST"): _a(CHARGE, OWN),
    ("/api/v1/claims/<int:visit_id>", "POST"): _a(CASHIER, OWN),
    ("/api/v1/claims/<int:visit_id>/xml", "GET"): _a(CASHIER, OWN),
    # --- FHIR: fixed routes ------------------------------------------------------------------
    ("/fhir", "POST"): _a(STAFF, OWN, "each entry is checked as its own interaction"),
    ("/fhir/", "POST"): _a(STAFF, OWN, "each entry is checked as its own interaction"),
    ("/fhir/$export", "GET"): _a(STAFF, OWN_LIST, "exports only the types the caller may read"),
    ("/fhir/$export", "POST"): _a(STAFF, OWN_LIST, "exports only the types the caller may read"),
    ("/fhir/Patient/$export", "GET"): _a(STAFF, OWN_LIST),
    ("/fhir/Patient/$export", "POST"): _a(STAFF, OWN_LIST),
    ("/fhir/Group/<group_id>/$export", "GET"): _a(STAFF, OWN),
    ("/fhir/Group/<group_id>/$export", "POST"): _a(STAFF, OWN),
    ("/fhir/bulk/<job_id>", "GET"): _a(STAFF, "the caller's own export jobs"),
    ("/fhir/bulk/<job_id>", "DELETE"): _a(STAFF, "the caller's own export jobs"),
    ("/fhir/bulk/<job_id>/file/<name>", "GET"): _a(STAFF, "the caller's own export jobs"),
    ("/fhir/Patient/<patient_id>/$everything", "GET"): _a(PATIENT, EVERYTHING),
}

# The audit trail and the conformance artefacts have their own FHIR routes.
for _type, _roles, _records in (
    ("AuditEvent", AUDIT, AUDIT_TRAIL),
    ("CodeSystem", STAFF, CATALOG),
    ("ValueSet", STAFF, CATALOG),
    ("StructureDefinition", STAFF, CATALOG),
):
    for _suffix, _method in (
        ("", "GET"),
        ("/_search", "POST"),
        ("/_history", "GET"),
        ("/<resource_id>", "GET"),
        ("/<resource_id>/_history", "GET"),
        ("/<resource_id>/_history/<version_id>", "GET"),
    ):
        ROUTES[(f"/fhir/{_type}{_suffix}", _method)] = _a(_roles, _records)

# The generic FHIR routes: who may do what is decided per resource type (FHIR_TYPES).
FHIR_INTERACTIONS: dict[tuple[str, str], str] = {
    ("/fhir/<resource_type>", "GET"): "search",
    ("/fhir/<resource_type>/_search", "POST"): "search",
    ("/fhir/<resource_type>/_history", "GET"): "search",
    ("/fhir/<resource_type>/<resource_id>", "GET"): "read",
    ("/fhir/<resource_type>/<resource_id>/_history", "GET"): "read",
    ("/fhir/<resource_type>/<resource_id>/_history/<version_id>", "GET"): "read",
    ("/fhir/<resource_type>", "POST"): "create",
    ("/fhir/<resource_type>/<resource_id>", "PUT"): "update",
    ("/fhir/<resource_type>/<resource_id>", "PATCH"): "update",
    ("/fhir/<resource_type>/<resource_id>", "DELETE"): "delete",
    ("/fhir/<resource_type>", "PUT"): "conditional write",
    ("/fhir/<resource_type>", "PATCH"): "conditional write",
    ("/fhir/<resource_type>", "DELETE"): "conditional write",
}
for _key in FHIR_INTERACTIONS:
    ROUTES[_key] = Access(frozenset(), OWN, FHIR_GENERIC)


@dataclass(frozen=True)
class FhirType:
    """Who may read and search a type with a staff token, who may create and update it
    (None: not offered, 405), and which facility's resources they see."""

    read: frozenset[Role]
    records: str
    create: frozenset[Role] | None = None
    update: frozenset[Role] | None = None


FHIR_TYPES: dict[str, FhirType] = {
    "Patient": FhirType(PATIENT, SHARED, create=REGISTRATION, update=REGISTRATION),
    "Coverage": FhirType(PATIENT, SHARED),
    "AllergyIntolerance": FhirType(PATIENT, SHARED, create=REGISTRATION),
    "Encounter": FhirType(CLINICAL_READ, OWN),
    "Condition": FhirType(CLINICAL_READ, OWN),
    "Observation": FhirType(CLINICAL_READ, OWN, create=RESULT),
    "DiagnosticReport": FhirType(CLINICAL_READ, OWN, create=RESULT),
    "ServiceRequest": FhirType(CLINICAL_READ, OWN),
    "MedicationRequest": FhirType(RX_READ, OWN),
    "MedicationDispense": FhirType(RX_READ, OWN),
    "Claim": FhirType(CASHIER, OWN),
    "Group": FhirType(frozenset({AD, IN}), OWN),
    "Practitioner": FhirType(STAFF, CATALOG),
    "PractitionerRole": FhirType(STAFF, CATALOG),
    "Organization": FhirType(STAFF, CATALOG),
    "Location": FhirType(STAFF, CATALOG),
    "Medication": FhirType(STAFF, CATALOG),
}


def fhir_roles(resource_type: str, interaction: str) -> frozenset[Role] | None:
    """The roles allowed an interaction on a type; None when it is not offered (405)."""
    entry = FHIR_TYPES[resource_type]
    if interaction in ("read", "search"):
        return entry.read
    if interaction == "create":
        return entry.create
    if interaction == "update":
        return entry.update
    return None  # delete and conditional writes are offered on no type


# Records another facility may read. The code has no referral record a receiving
# facility could be granted: the sender's encounter keeps the target's code
# (Encounter.refer_to_facility_code) and the receiver's visit the sender's code, letter
# number and date (Visit.referral_from_facility_code ...), as text; so no exception here.
CROSS_FACILITY_EXCEPTIONS: tuple[str, ...] = ()
# Two operator views are not bound to the user's own facility (they hold no visit or
# clinical record of their own, but the messages and events name patients).
OPERATOR_VIEWS: tuple[str, ...] = (
    "The audit trail (`/api/v1/audit-events`, FHIR AuditEvent; admin, auditor): the "
    "user's facility and the facilities under it in the hierarchy, as a provincial "
    "hospital's auditor oversees its commune stations.",
    "The HL7 v2 monitor (`/admin/hl7/...`; admin): the messages of every peer, whatever "
    "the admin's facility: the listener and its peers are run for the whole deployment, "
    "and the raw messages name patients. Narrowing it to the peers of the admin's "
    "facility is open (messages from an unknown sender have no facility).",
)

# Machine clients of FHIR (SMART Backend Services) are not users with roles: what they
# may do is their token's system scopes, granted at registration (admin, /admin/fhir-clients),
# and the facilities named there.
FHIR_CLIENT_RULE = (
    "A registered FHIR client acts with the system scopes of its access token "
    "(`system/<type>.<cruds>`, v1 read/write accepted; granular `?query` scopes grant nothing) "
    "on the facilities it was registered for (none named: every facility). Writes are still "
    "limited to the types in the FHIR table that accept them."
)


def _roles_text(roles: frozenset[Role] | None) -> str:
    if roles is None:
        return "public"
    for name, group in GROUPS.items():
        if roles == group:
            return name
    return ", ".join(sorted(r.value for r in roles))


def _cell(roles: frozenset[Role] | None, role: Role) -> str:
    return "yes" if roles is None or role in roles else "—"


def render() -> str:
    """docs/access-matrix.md."""
    roles = list(Role)
    head = "| route | method | anonymous | " + " | ".join(r.value for r in roles) + " | records |"
    rule = "|" + "---|" * (len(roles) + 4)
    lines = [
        "# Access matrix",
        "",
        "Generated from `his/access_matrix.py` (`python -m his.access_matrix > "
        "docs/access-matrix.md`); `tests/security/test_access_matrix.py` walks every "
        "route of the app for every role, on SQLite and PostgreSQL, and fails when the "
        "app and this matrix disagree or a route is missing here.",
        "",
        "How a refusal looks: an anonymous caller gets 401 from the REST and FHIR APIs and a "
        "redirect to the login page from the web screens; a logged-in user whose role is not "
        "listed gets 403 (and an `access_denied` audit row). A record of another facility "
        "(visit, encounter, prescription, bill, payment, charge, claim, and their FHIR "
        "resources) is answered 404, as if it did not exist. The patient index is shared: "
        "every facility finds every patient.",
        "",
        "## Cross-facility reads",
        "",
        "Visits and clinical records: none, on every screen, REST route and FHIR "
        "interaction. A referral is recorded as text on each side: the referring doctor's "
        "encounter keeps the target facility's code (`refer_to_facility_code`, disposition "
        "*refer out*), and the receiving facility's visit keeps the referring facility's "
        "code, letter number and date (`referral_from_facility_code`, ...). Neither grants "
        "the other facility any access: the receiving facility reads the shared patient "
        "index and the paper or electronic referral letter, not the sender's encounter.",
        "",
        "Operator views that reach beyond the user's facility:",
        "",
        *[f"- {view}" for view in OPERATOR_VIEWS],
        "",
        "## Routes",
        "",
        head,
        rule,
    ]
    for (path, method), access in sorted(ROUTES.items()):
        if access.note == FHIR_GENERIC:
            cells = ["—"] + ["FHIR"] * len(roles)
        else:
            cells = ["yes" if access.roles is None else "—"]
            cells += [_cell(access.roles, r) for r in roles]
        records = access.records + (f" ({access.note})" if access.note else "")
        lines.append(f"| `{path}` | {method} | " + " | ".join(cells) + f" | {records} |")
    lines += [
        "",
        "Role groups: "
        + "; ".join(
            f"**{name}**: {', '.join(sorted(r.value for r in g))}"
            for name, g in GROUPS.items()
            if name != "any logged-in user"
        )
        + ".",
        "",
        "## FHIR, with a staff token",
        "",
        "A staff member's token of `/api/v1/auth/token` works on `/fhir`. Read covers read, "
        "vread and instance history; search covers search, `_search` and type history. "
        "Create and update are offered on the types listed; delete and conditional "
        "update/patch/delete on none (405 for every caller).",
        "",
        "| type | read, search | create | update | records |",
        "|---|---|---|---|---|",
    ]
    for name, entry in FHIR_TYPES.items():
        lines.append(
            f"| {name} | {_roles_text(entry.read)} | "
            f"{_roles_text(entry.create) if entry.create else '405'} | "
            f"{_roles_text(entry.update) if entry.update else '405'} | {entry.records} |"
        )
    lines += [
        f"| AuditEvent | admin, auditor | 405 | 405 | {AUDIT_TRAIL} |",
        "| CodeSystem, ValueSet, StructureDefinition | any logged-in user | 405 | 405 | "
        + CATALOG
        + " |",
        "",
        "## FHIR, machine clients",
        "",
        FHIR_CLIENT_RULE,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
