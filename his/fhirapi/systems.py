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
