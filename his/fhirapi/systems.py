"""Every URI the FHIR API names: identifier systems, code systems, extensions.

One place, because a receiving system matches on these strings. The community VN Core
IG (``http://fhir.hl7.org.vn/core``) is followed where it defines a URI; the rest lives
under our own canonical and is published from the top-level ``fhir/`` folder.
[verify] the VN Core ``sid/`` names against the IG release a partner uses.
"""

from __future__ import annotations

VN_CORE = "http://fhir.hl7.org.vn/core"
OURS = "https://his.example.vn/fhir"

# Identifier systems
CCCD = f"{VN_CORE}/sid/cccd"  # số định danh cá nhân, the patient's core identifier
CMND = f"{VN_CORE}/sid/cmnd"
PASSPORT = f"{VN_CORE}/sid/passport"
BHYT = f"{VN_CORE}/sid/bhyt"  # the card code as printed (10 or 15 characters)
BHXH = f"{VN_CORE}/sid/ma-so-bhxh"  # the 10-digit social-insurance number
MA_LK = f"{VN_CORE}/sid/ma-lk"  # the visit code linking a claim's files
FACILITY_CODE = f"{VN_CORE}/sid/ma-cskcb"  # 5-character facility code
CCHN = f"{VN_CORE}/sid/cchn"  # practising certificate
EPRESCRIPTION = f"{VN_CORE}/sid/ma-don-thuoc"  # national prescription code
MRN = f"{OURS}/sid/mrn"
USERNAME = f"{OURS}/sid/username"
ENCOUNTER_ID = f"{OURS}/sid/encounter"
DRUG_CODE = f"{OURS}/sid/ma-thuoc"
SERVICE_CODE = f"{OURS}/CodeSystem/dich-vu-ky-thuat"
DEPARTMENT_CODE = f"{OURS}/sid/ma-khoa"
ROOM_CODE = f"{OURS}/sid/ma-phong"

# Extensions
ETHNICITY = f"{VN_CORE}/StructureDefinition/vn-ext-ethnicity"
OCCUPATION = f"{VN_CORE}/StructureDefinition/vn-ext-occupation"
ADMIN_PROVINCE = f"{OURS}/StructureDefinition/address-province-code"
ADMIN_COMMUNE = f"{OURS}/StructureDefinition/address-commune-code"
BIRTH_PRECISION = f"{OURS}/StructureDefinition/birth-date-precision"
CARE_LEVEL_EXT = f"{OURS}/StructureDefinition/care-level"
BENEFIT_LEVEL_EXT = f"{OURS}/StructureDefinition/bhyt-benefit-level"
FIVE_YEARS_EXT = f"{OURS}/StructureDefinition/bhyt-five-years-date"
AREA_CODE_EXT = f"{OURS}/StructureDefinition/bhyt-area-code"
VERIFICATION_EXT = f"{OURS}/StructureDefinition/bhyt-verification-status"

# Code systems
ICD10_VN = f"{VN_CORE}/CodeSystem/icd-10-vn"
ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"
ETHNICITY_CS = f"{VN_CORE}/CodeSystem/vn-ethnicity"
CARE_LEVEL_CS = f"{OURS}/CodeSystem/care-level"
BHYT_GROUP_CS = f"{OURS}/CodeSystem/bhyt-group"
BENEFIT_LEVEL_CS = f"{OURS}/CodeSystem/bhyt-benefit-level"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
EOB_ROLE = "http://terminology.hl7.org/CodeSystem/claim-type"

# --- admin helper: Organization, Location, Practitioner, Medication*, Group, AuditEvent ---
LEGACY_TIER_EXT = f"{OURS}/StructureDefinition/legacy-tier"  # tuyến before 2025
LEGACY_TIER_CS = f"{OURS}/CodeSystem/legacy-tier"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
PRESCRIBER_CODE = f"{VN_CORE}/sid/ma-lien-thong-bac-si"  # the e-prescription connection code
STAFF_ROLE_CS = f"{OURS}/CodeSystem/staff-role"
PRACTITIONER_ROLE_CS = "http://terminology.hl7.org/CodeSystem/practitioner-role"
DRUG_NATIONAL_CODE = f"{VN_CORE}/sid/ma-hoat-chat"  # national active-ingredient code (DMDC)
DRUG_REGISTRATION = f"{VN_CORE}/sid/so-dang-ky-thuoc"  # số đăng ký (SĐK)
RX_CLASS_EXT = f"{OURS}/StructureDefinition/rx-class"
RX_CLASS_CS = f"{OURS}/CodeSystem/rx-class"  # N, H, C, OTC (Circular 26/2025)
MEDICATION_STATUS_REASON_CS = f"{OURS}/CodeSystem/medication-request-status-reason"
DISPENSE_KIND_CS = f"{OURS}/CodeSystem/dispense-kind"  # dispense | return
DISPENSE_LOT_EXT = f"{OURS}/StructureDefinition/dispense-lot"
ROUTE_CS = f"{OURS}/CodeSystem/route"  # the route as the catalog writes it: "uống"
FHIR_CLIENT_ID = f"{OURS}/sid/fhir-client"  # a SMART backend client's client_id
AUDIT_EVENT_TYPE = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_REST_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_ACTION_CS = f"{OURS}/CodeSystem/audit-action"  # our own AuditAction values
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
AUDIT_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
EXTRA_SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
DOSAGE_FORM_CS = f"{OURS}/CodeSystem/dosage-form"  # the form as the catalog writes it
DRUG_STRENGTH_EXT = f"{OURS}/StructureDefinition/drug-strength"  # "500 mg" as written
MEDREQ_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
MEDREQ_COURSE = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"

# --- clinical helper: Encounter, Condition, Observation, ServiceRequest, DiagnosticReport,
# AllergyIntolerance, Coverage ---
ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section: LAB, RAD
SNOMED = "http://snomed.info/sct"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition"  # /vitalsigns, /bp, /heartrate...
REFERRAL_LETTER = f"{OURS}/sid/giay-chuyen-tuyen"  # the referral letter's number
SERVICE_ORDER_ID = f"{OURS}/sid/chi-dinh"  # our order (chỉ định) id
PAYOR_ID = f"{OURS}/sid/payor"  # the fund: value "BHXH" (Bảo hiểm xã hội Việt Nam)
PRIORITY_REASON_CS = f"{OURS}/CodeSystem/priority-reason"  # who is seen first by law
DISPOSITION_CS = f"{OURS}/CodeSystem/disposition"  # home, follow_up, admit, refer_out, died
SERVICE_KIND_CS = f"{OURS}/CodeSystem/service-kind"  # examination, lab, imaging, procedure
ALLERGY_SEVERITY_CS = f"{OURS}/CodeSystem/allergy-severity"
SUPERSEDES_EXT = f"{OURS}/StructureDefinition/observation-supersedes"  # the result it corrects
REGISTERED_FACILITY_EXT = f"{OURS}/StructureDefinition/bhyt-registered-facility"  # MA_DKBD
GROUP_ID = f"{OURS}/sid/group"  # our patient groups (fhir_group.id)
ALLERGY_SEVERITY_EXT = f"{OURS}/StructureDefinition/allergy-severity"  # kept without a reaction
