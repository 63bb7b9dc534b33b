"""Our own output validates the way incoming resources are validated: the demo province,
projected at commit, every stored resource of every type through validation.validate."""

import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from billing.claim_files import make_claim_file
from his.db import utcnow
from his.fhirapi import systems
from his.fhirapi.resource_types import PROJECTED
from his.fhirapi.validation import validate_output
from his.localtime import local_today
from his.models import (
    DiagnosticReport,
    FhirGroup,
    FhirGroupMember,
    FhirResource,
    FhirResourceVersion,
    Role,
)
from his.services import encounters, stock
from his.services.access import Principal
from his.services.demo import load_demo
from tests import billing_data, encounters_data, pharmacy_data, prescribing_data
from tests.factories import UserFactory


def clinical_episode(session) -> None:
    """What the demo province does not hold (it has no examinations yet): one visit with a
    diagnosis, vital signs, an allergy, a lab order with its result and report, a signed
    prescription dispensed, and an export group. Built through the services where they
    exist, so the projection sees what production writes."""
    clinic = encounters_data.clinic(session)
    _old, icd = encounters_data.icd10_lists(session)
    encounter = encounters_data.examined(session, clinic)
    patient = encounter.patient
    doctor = Principal.for_user(clinic.doctor)
    prescribing_data.add_diagnosis(session, encounter, icd, next(iter(icd_codes(session, icd))))
    prescribing_data.add_weight(session, encounter, "61.5")
    prescribing_data.add_allergy(session, patient, "Penicillin")
    order = encounters.add_order(session, doctor, encounter.id, "23.0075.1494")
    result = encounters.enter_result(session, Principal.for_user(clinic.lab), order.id, "5.2")
    session.add(
        DiagnosticReport(
            patient_id=patient.id,
            facility_id=clinic.facility.id,
            encounter_id=encounter.id,
            order_id=order.id,
            status="final",
            category="LAB",
            code_system=systems.LOINC,
            code="2345-7",
            title="Glucose",
            conclusion="Bình thường",
            result_ids=[result.id],
            issued_at=utcnow(),
            source="LIS",
        )
    )
    drug = pharmacy_data.make_drug(session, clinic.facility, "AMOX500")
    pharmacy_data.make_lot(
        session,
        clinic.facility,
        drug,
        "L1",
        local_today().replace(year=local_today().year + 2),
        100,
    )
    rx = pharmacy_data.make_prescription(
        session, clinic.facility, [(drug, 10)], doctor=clinic.doctor, patient=patient
    )
    pharmacist = UserFactory(roles=(Role.PHARMACIST,), facility=clinic.facility)
    stock.dispense(session, pharmacy_data.principal_of(pharmacist), rx.id)
    # A finished BHYT visit with its signed claim file (FHIR Claim), at another hospital.
    keys = Path(tempfile.mkdtemp(prefix="claim-keys-"))
    hospital = billing_data.claim_hospital(session, keys, code="91051")
    claimed = billing_data.finished_visit(session, hospital)
    make_claim_file(session, Principal.for_user(hospital.cashier), claimed.id, keys)
    group = FhirGroup(name="BHXH tỉnh: đợt 1", facility_id=clinic.facility.id)
    session.add(group)
    session.flush()
    session.add(FhirGroupMember(group_id=group.id, patient_id=patient.id))


def icd_codes(session, version):
    from his.models import Icd10Code

    return session.scalars(
        select(Icd10Code.code).where(Icd10Code.version_id == version.id).order_by(Icd10Code.code)
    )


def test_every_projected_resource_of_the_demo_province_validates(db_session):
    started = time.monotonic()
    load_demo(db_session)
    clinical_episode(db_session)
    db_session.commit()  # the projection is written here
    loaded = time.monotonic()
    seen, problems = Counter(), {}
    for row in db_session.scalars(select(FhirResource).where(FhirResource.deleted.is_(False))):
        resource = json.loads(row.content)
        seen[row.resource_type] += 1
        assert (resource["resourceType"], resource["id"]) == (row.resource_type, row.resource_id)
        assert resource["meta"]["versionId"] == str(row.version_id)
        found = validate_output(resource)
        if found:
            problems[f"{row.resource_type}/{row.resource_id}"] = found[:3]
    # Earlier versions were served once too (vread, _history): they validate as well.
    for content in db_session.scalars(
        select(FhirResourceVersion.content).where(FhirResourceVersion.deleted.is_(False))
    ):
        found = validate_output(json.loads(content))
        if found:
            problems.setdefault("version", found[:3])
    print(
        f"\nprojected {dict(seen)} in {loaded - started:.1f} s; "
        f"validated in {time.monotonic() - loaded:.1f} s"
    )
    assert problems == {}
    missing = [t for t in PROJECTED if not seen[t]]
    assert missing == [], f"the demo province projects no {missing}"
