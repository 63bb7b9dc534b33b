"""The examination rules, called at the service boundary (the API and the pages call the
same functions)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from his.errors import Conflict, Forbidden, NotFound, ValidationFailed
from his.models import (
    AuditAction,
    AuditEvent,
    Diagnosis,
    EncounterStatus,
    OrderStatus,
    PriorityReason,
    Sex,
    VisitStatus,
)
from his.services import encounters as svc
from his.services.access import Principal
from tests import encounters_data as data
from tests.factories import PatientFactory, UserFactory, VisitFactory


@pytest.fixture
def setup(db_session):
    clinic = data.clinic(db_session)
    data.icd10_lists(db_session)
    return clinic


def who(user) -> Principal:
    return Principal.for_user(user)


def waiting(clinic, number: int, *, priority=None, sex=Sex.FEMALE, **extra):
    patient = PatientFactory(sex=sex)
    return VisitFactory(
        facility_id=clinic.facility.id,
        patient_id=patient.id,
        room_id=clinic.room.id,
        queue_date=data.today(),
        queue_number=number,
        priority_reason=priority,
        **{"status": VisitStatus.WAITING, **extra},
    )


def started(db_session, clinic, **visit):
    visit = waiting(clinic, 1, **visit)
    return svc.start_examination(db_session, who(clinic.doctor), visit.id)


def finish_home(db_session, clinic, encounter):
    return svc.finish(db_session, who(clinic.doctor), encounter.id, svc.Finish(disposition="home"))


# --- worklist ----------------------------------------------------------------------------------


def test_worklist_puts_priority_first_then_numbers(db_session, setup):
    clinic = setup
    first = waiting(clinic, 1)
    second = waiting(clinic, 2)
    child = waiting(clinic, 3, priority=PriorityReason.CHILD_UNDER_6)
    worklist = svc.worklist(db_session, who(clinic.nurse), clinic.room.id)
    assert [v.id for v in worklist.waiting] == [child.id, first.id, second.id]


def test_call_next_calls_in_queue_order_and_the_board_shows_it(db_session, setup):
    clinic = setup
    first = waiting(clinic, 1)
    child = waiting(clinic, 2, priority=PriorityReason.CHILD_UNDER_6)
    called = svc.call_next(db_session, who(clinic.doctor), clinic.room.id)
    assert called.id == child.id and called.called_at is not None
    again = svc.call_next(db_session, who(clinic.doctor), clinic.room.id)
    assert again.id == first.id
    worklist = svc.worklist(db_session, who(clinic.doctor), clinic.room.id)
    assert [v.id for v in worklist.called] == [child.id, first.id]
    assert worklist.waiting == []
    with pytest.raises(NotFound):
        svc.call_next(db_session, who(clinic.doctor), clinic.room.id)


def test_receptionist_has_no_worklist(db_session, setup):
    with pytest.raises(Forbidden):
        svc.worklist(db_session, who(setup.receptionist), setup.room.id)


def test_other_facilitys_room_is_missing(db_session, setup):
    other = data.clinic(db_session)
    with pytest.raises(NotFound):
        svc.worklist(db_session, who(setup.doctor), other.room.id)


# --- start -------------------------------------------------------------------------------------


def test_start_opens_an_encounter_and_the_visit_is_in_examination(db_session, setup):
    clinic = setup
    visit = waiting(clinic, 1)
    encounter = svc.start_examination(db_session, who(clinic.doctor), visit.id)
    assert encounter.status is EncounterStatus.IN_PROGRESS
    assert encounter.doctor_id == clinic.doctor.id and encounter.room_id == clinic.room.id
    assert encounter.patient_id == visit.patient_id and encounter.started_at is not None
    assert visit.status is VisitStatus.IN_EXAMINATION and visit.started_at is not None
    worklist = svc.worklist(db_session, who(clinic.doctor), clinic.room.id)
    assert [v.id for v in worklist.in_examination] == [visit.id]
    assert worklist.encounters[visit.id].id == encounter.id


def test_only_doctors_start(db_session, setup):
    visit = waiting(setup, 1)
    with pytest.raises(Forbidden):
        svc.start_examination(db_session, who(setup.nurse), visit.id)


def test_no_second_encounter_in_the_same_room(db_session, setup):
    encounter = started(db_session, setup)
    with pytest.raises(Conflict):
        svc.start_examination(db_session, who(setup.doctor), encounter.visit_id)


@pytest.mark.parametrize("status", [VisitStatus.FINISHED, VisitStatus.CANCELLED])
def test_finished_or_cancelled_visit_is_not_examined(db_session, setup, status):
    visit = waiting(setup, 1, status=status)
    with pytest.raises(Conflict):
        svc.start_examination(db_session, who(setup.doctor), visit.id)


def test_other_facilitys_visit_is_missing(db_session, setup):
    other = data.clinic(db_session)
    visit = waiting(other, 1)
    with pytest.raises(NotFound):
        svc.start_examination(db_session, who(setup.doctor), visit.id)


# --- the record and reading it -----------------------------------------------------------------


def test_patch_writes_only_given_fields_and_bumps_the_version(db_session, setup):
    encounter = started(db_session, setup)
    version = encounter.version
    svc.update_encounter(db_session, who(setup.doctor), encounter.id, {"reason": "Sốt, ho"})
    svc.update_encounter(db_session, who(setup.doctor), encounter.id, {"findings": "Họng đỏ"})
    assert encounter.reason == "Sốt, ho" and encounter.findings == "Họng đỏ"
    assert encounter.version > version
    with pytest.raises(svc.StaleEncounter):
        svc.update_encounter(
            db_session, who(setup.doctor), encounter.id, {"reason": "x"}, expected_version=version
        )


@pytest.mark.parametrize("role", ["receptionist", "cashier"])
def test_reception_and_cashiers_cannot_read_clinical_notes(db_session, setup, role):
    encounter = started(db_session, setup)
    with pytest.raises(Forbidden) as refused:
        svc.get_encounter(db_session, who(getattr(setup, role)), encounter.id)
    assert "clinical notes" in refused.value.detail.lower()


def test_a_read_is_audited(db_session, setup):
    encounter = started(db_session, setup)
    svc.get_encounter(db_session, who(setup.nurse), encounter.id)
    reads = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == AuditAction.READ,
            AuditEvent.entity_type == "Encounter",
            AuditEvent.user_id == setup.nurse.id,
        )
    ).all()
    assert len(reads) == 1 and reads[0].patient_id == encounter.patient_id


def test_other_facility_cannot_read(db_session, setup):
    encounter = started(db_session, setup)
    stranger = UserFactory(roles=("doctor",))
    with pytest.raises(NotFound):
        svc.get_encounter(db_session, who(stranger), encounter.id)


# --- vital signs -------------------------------------------------------------------------------


def test_vitals_are_stored_with_bmi(db_session, setup):
    encounter = started(db_session, setup)
    vitals = svc.record_vitals(
        db_session,
        who(setup.nurse),
        encounter.id,
        {
            "pulse": 80,
            "systolic": 120,
            "diastolic": 80,
            "temperature": "37,2",
            "weight": 60,
            "height": 160,
            "spo2": 98,
            "respiratory_rate": 18,
        },
    )
    assert vitals.temperature == Decimal("37.2")
    assert vitals.bmi == Decimal("23.4")
    assert vitals.recorded_by_id == setup.nurse.id


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("pulse", 19, "20 and 250 /min"),
        ("pulse", 251, "20 and 250 /min"),
        ("systolic", 290, "50 and 280 mmHg"),
        ("diastolic", 15, "20 and 180 mmHg"),
        ("temperature", 45.5, "30 and 45 °C"),
        ("temperature", 29.9, "30 and 45 °C"),
        ("respiratory_rate", 3, "4 and 80 /min"),
        ("spo2", 101, "50 and 100 %"),
        ("weight", 0.2, "0.3 and 350 kg"),
        ("height", 260, "20 and 250 cm"),
    ],
)
def test_implausible_vitals_are_refused_naming_range_and_unit(
    db_session, setup, field, value, words
):
    encounter = started(db_session, setup)
    with pytest.raises(ValidationFailed) as refused:
        svc.record_vitals(db_session, who(setup.nurse), encounter.id, {field: value})
    assert words in refused.value.errors[field][0]
    assert encounter.vitals == []


def test_range_limits_themselves_are_accepted(db_session, setup):
    encounter = started(db_session, setup)
    low = {name: spec.low for name, spec in svc.VITAL_RANGES.items() if name != "systolic"}
    svc.record_vitals(db_session, who(setup.nurse), encounter.id, {**low, "systolic": 50})


def test_diastolic_must_be_below_systolic(db_session, setup):
    encounter = started(db_session, setup)
    with pytest.raises(ValidationFailed) as refused:
        svc.record_vitals(
            db_session, who(setup.nurse), encounter.id, {"systolic": 100, "diastolic": 100}
        )
    assert "diastolic" in refused.value.errors


def test_vitals_need_a_number_and_whole_numbers_where_counted(db_session, setup):
    encounter = started(db_session, setup)
    with pytest.raises(ValidationFailed) as refused:
        svc.record_vitals(db_session, who(setup.nurse), encounter.id, {"pulse": 72.5, "spo2": "x"})
    assert set(refused.value.errors) == {"pulse", "spo2"}
    with pytest.raises(ValidationFailed):
        svc.record_vitals(db_session, who(setup.nurse), encounter.id, {})


def test_child_rows_change_the_version(db_session, setup):
    """The ETag must change when only vitals, diagnoses or orders changed."""
    encounter = started(db_session, setup)
    before = encounter.version
    svc.record_vitals(db_session, who(setup.nurse), encounter.id, {"pulse": 80})
    after_vitals = encounter.version
    add(db_session, setup, encounter, "I10", main=True)
    assert before < after_vitals < encounter.version


def test_receptionist_records_no_vitals(db_session, setup):
    encounter = started(db_session, setup)
    with pytest.raises(Forbidden):
        svc.record_vitals(db_session, who(setup.receptionist), encounter.id, {"pulse": 80})


# --- diagnoses ---------------------------------------------------------------------------------


def add(db_session, clinic, encounter, code, main=False):
    return svc.add_diagnosis(db_session, who(clinic.doctor), encounter.id, code, main)


def test_diagnosis_keeps_title_and_list(db_session, setup):
    encounter = started(db_session, setup)
    diagnosis = add(db_session, setup, encounter, "i10", main=True)
    assert diagnosis.icd10_code == "I10" and diagnosis.is_main and diagnosis.position == 0
    assert diagnosis.title == "Tăng huyết áp vô căn (nguyên phát)"
    assert diagnosis.icd10_version_id is not None


@pytest.mark.parametrize(
    ("code", "main", "words"),
    [
        ("X99.99", False, "not in the ICD-10 list"),
        ("U85", False, "may not be used"),
        ("J06", True, "J06.0, J06.9"),
        ("B95.2", True, "may not be the main diagnosis"),
        ("R99", False, "cause of death"),
        ("N40", False, "male patients only"),
    ],
)
def test_codes_the_list_forbids_are_refused(db_session, setup, code, main, words):
    encounter = started(db_session, setup)  # the patient is a woman
    with pytest.raises(ValidationFailed) as refused:
        add(db_session, setup, encounter, code, main)
    assert words in refused.value.errors["icd10"][0]
    assert encounter.diagnoses == []


def test_not_main_code_is_fine_as_secondary(db_session, setup):
    encounter = started(db_session, setup)
    assert not add(db_session, setup, encounter, "B95.2").is_main


def test_sex_specific_code_only_refused_on_a_definite_mismatch(db_session, setup):
    man = started(db_session, setup, sex=Sex.MALE)
    add(db_session, setup, man, "N40", main=True)
    visit = waiting(setup, 5, sex=Sex.UNDETERMINED)
    undetermined = svc.start_examination(db_session, who(setup.doctor), visit.id)
    add(db_session, setup, undetermined, "O80", main=True)
    with pytest.raises(ValidationFailed):
        add(db_session, setup, man, "O80")


def test_new_main_makes_the_old_one_secondary(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    add(db_session, setup, encounter, "K29.7", main=True)
    db_session.expire(encounter, ["diagnoses"])
    mains = [d.icd10_code for d in encounter.diagnoses if d.is_main]
    assert mains == ["K29.7"]
    assert [d.icd10_code for d in encounter.diagnoses] == ["K29.7", "I10"]


def test_same_code_twice_is_refused(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10")
    with pytest.raises(Conflict):
        add(db_session, setup, encounter, "I10", main=True)


def test_at_most_twelve_secondary(db_session, setup, monkeypatch):
    monkeypatch.setattr(svc, "MAX_SECONDARY", 2)  # the rule, with a short list of codes
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10")
    add(db_session, setup, encounter, "E11.9")
    with pytest.raises(ValidationFailed):
        add(db_session, setup, encounter, "K29.7")
    add(db_session, setup, encounter, "K29.7", main=True)
    with pytest.raises(ValidationFailed):  # demoting the main would make a third
        add(db_session, setup, encounter, "Z00.0", main=True)


def test_the_limit_is_twelve():
    assert svc.MAX_SECONDARY == 12


def test_remove_diagnosis_while_in_progress_keeps_the_row(db_session, setup):
    encounter = started(db_session, setup)
    diagnosis = add(db_session, setup, encounter, "I10", main=True)
    svc.remove_diagnosis(db_session, who(setup.doctor), encounter.id, diagnosis.id)
    row = db_session.get(Diagnosis, diagnosis.id)
    assert row is not None and row.removed_at is not None
    assert row.removed_by_id == setup.doctor.id
    assert encounter.diagnoses == []
    assert [d.id for d in encounter.diagnosis_history] == [diagnosis.id]
    assert encounter.amendments == []  # a draft, not an amendment
    # Removed rows are ignored: the code may be added again, and finishing needs a main.
    with pytest.raises(ValidationFailed):
        finish_home(db_session, setup, encounter)
    again = add(db_session, setup, encounter, "I10", main=True)
    assert again.id != diagnosis.id
    with pytest.raises(NotFound):  # a removed diagnosis is not removed twice
        svc.remove_diagnosis(db_session, who(setup.doctor), encounter.id, diagnosis.id)


# --- orders and results ------------------------------------------------------------------------


def test_order_and_results_supersede(db_session, setup):
    encounter = started(db_session, setup)
    order = svc.add_order(db_session, who(setup.doctor), encounter.id, "23.0075.1494")
    assert order.status is OrderStatus.ORDERED and order.service_id == setup.services["GLU"].id
    first = svc.enter_result(db_session, who(setup.lab), order.id, "5.2")
    assert first.unit == "mmol/L" and first.reference_range == "3.9–6.4"
    assert order.status is OrderStatus.RESULTED
    second = svc.enter_result(
        db_session, who(setup.nurse), order.id, "5.8", unit="mmol/l", conclusion="Bình thường"
    )
    assert second.supersedes_id == first.id and second.unit == "mmol/l"
    assert svc.current_results(order) == [second]


def test_unknown_service_is_refused(db_session, setup):
    encounter = started(db_session, setup)
    with pytest.raises(ValidationFailed) as refused:
        svc.add_order(db_session, who(setup.doctor), encounter.id, "NO.SUCH")
    assert "service_code" in refused.value.errors


def test_other_facilitys_service_is_refused(db_session, setup):
    other = data.clinic(db_session)
    encounter = started(db_session, setup)
    other.services["GLU"].code = "99.9999.9999"
    db_session.flush()
    with pytest.raises(ValidationFailed):
        svc.add_order(db_session, who(setup.doctor), encounter.id, "99.9999.9999")


def test_cancel_order_and_no_result_after(db_session, setup):
    encounter = started(db_session, setup)
    order = svc.add_order(db_session, who(setup.doctor), encounter.id, "18.0071.0028")
    svc.cancel_order(db_session, who(setup.doctor), encounter.id, order.id)
    assert order.status is OrderStatus.CANCELLED
    with pytest.raises(Conflict):
        svc.enter_result(db_session, who(setup.lab), order.id, "Bình thường")


def test_receptionist_enters_no_result(db_session, setup):
    encounter = started(db_session, setup)
    order = svc.add_order(db_session, who(setup.doctor), encounter.id, "18.0071.0028")
    with pytest.raises(Forbidden):
        svc.enter_result(db_session, who(setup.receptionist), order.id, "x")


# --- finishing ---------------------------------------------------------------------------------


def test_finish_needs_a_main_diagnosis(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10")
    with pytest.raises(ValidationFailed) as refused:
        finish_home(db_session, setup, encounter)
    assert "diagnoses" in refused.value.errors
    assert encounter.status is EncounterStatus.IN_PROGRESS


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        ({"disposition": None}, "disposition"),
        ({"disposition": "dancing"}, "disposition"),
        ({"disposition": "follow_up"}, "follow_up_date"),
        ({"disposition": "follow_up", "follow_up_date": data.today()}, "follow_up_date"),
        ({"disposition": "refer_out", "refer_reason": "Cần chụp CT"}, "refer_to_facility_code"),
        (
            {"disposition": "refer_out", "refer_to_facility_code": "1234", "refer_reason": "x"},
            "refer_to_facility_code",
        ),
        ({"disposition": "refer_out", "refer_to_facility_code": "91001"}, "refer_reason"),
        ({"disposition": "died"}, "died_at"),
    ],
)
def test_disposition_needs_its_fields(db_session, setup, fields, wrong):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    with pytest.raises(ValidationFailed) as refused:
        svc.finish(db_session, who(setup.doctor), encounter.id, svc.Finish(**fields))
    assert wrong in refused.value.errors
    assert encounter.status is EncounterStatus.IN_PROGRESS


def test_dispositions_with_their_fields_are_accepted(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    svc.finish(
        db_session,
        who(setup.doctor),
        encounter.id,
        svc.Finish(
            disposition="refer_out",
            refer_to_facility_code="91001",
            refer_reason="Cần chụp CT",
            referral_letter_number="CV-12",
            follow_up_date=data.today() + dt.timedelta(days=3),  # not kept: not a follow-up
        ),
    )
    assert encounter.refer_to_facility_code == "91001" and encounter.follow_up_date is None


def test_finish_signs_locks_and_closes_the_visit(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    svc.record_vitals(db_session, who(setup.nurse), encounter.id, {"pulse": 80})
    order = svc.add_order(db_session, who(setup.doctor), encounter.id, "23.0075.1494")
    svc.enter_result(db_session, who(setup.lab), order.id, "5.2")
    svc.finish(
        db_session,
        who(setup.doctor),
        encounter.id,
        svc.Finish(
            disposition="follow_up",
            follow_up_date=data.today() + dt.timedelta(days=7),
            conclusion="Tăng huyết áp độ 1",
        ),
    )
    assert encounter.status is EncounterStatus.FINISHED and encounter.finished_at is not None
    assert encounter.signed_by_id == setup.doctor.id
    assert encounter.conclusion == "Tăng huyết áp độ 1"
    assert len(encounter.content_hash) == 64
    assert encounter.visit.status is VisitStatus.FINISHED
    # The hash is of the content as stored: reloading gives the same one.
    db_session.expire_all()
    assert svc.verify(svc.get_encounter(db_session, who(setup.doctor), encounter.id))
    encounter.vitals[0].pulse = 81
    assert not svc.verify(encounter)
    encounter.vitals[0].pulse = 80
    # Locked: every change is refused.
    doctor = who(setup.doctor)
    for attempt in (
        lambda: svc.update_encounter(db_session, doctor, encounter.id, {"reason": "x"}),
        lambda: svc.record_vitals(db_session, doctor, encounter.id, {"pulse": 70}),
        lambda: add(db_session, setup, encounter, "E11.9"),
        lambda: svc.remove_diagnosis(db_session, doctor, encounter.id, encounter.diagnoses[0].id),
        lambda: svc.add_order(db_session, doctor, encounter.id, "18.0071.0028"),
        lambda: svc.cancel_order(db_session, doctor, encounter.id, order.id),
        lambda: finish_home(db_session, setup, encounter),
    ):
        with pytest.raises(Conflict):
            attempt()


def test_visit_stays_open_while_another_encounter_runs(db_session, setup):
    first = started(db_session, setup)
    second_room = data.clinic(db_session).room
    second_room.department = setup.room.department
    db_session.flush()
    second = svc.start_examination(
        db_session, who(setup.doctor), first.visit_id, room_id=second_room.id
    )
    add(db_session, setup, first, "I10", main=True)
    finish_home(db_session, setup, first)
    assert first.visit.status is VisitStatus.IN_EXAMINATION
    add(db_session, setup, second, "I10", main=True)
    finish_home(db_session, setup, second)
    assert first.visit.status is VisitStatus.FINISHED


def test_codes_are_checked_against_the_list_of_the_end_date(db_session, setup, monkeypatch):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, data.DROPPED_LATER, main=True)
    # The examination ends on a day the later list (without the code) is in force.
    monkeypatch.setattr(svc, "local_today", lambda: dt.date(2099, 1, 2))
    with pytest.raises(ValidationFailed) as refused:
        finish_home(db_session, setup, encounter)
    message = refused.value.errors["diagnoses"][0]
    assert data.DROPPED_LATER in message and "02/01/2099" in message
    assert encounter.status is EncounterStatus.IN_PROGRESS


def test_finish_records_the_end_date_list(db_session, setup, monkeypatch):
    first, later = (
        db_session.get(type(v), v.id) for v in data.icd10_lists(db_session, dt.date(2098, 1, 1))
    )
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    monkeypatch.setattr(svc, "local_today", lambda: dt.date(2098, 6, 1))
    finish_home(db_session, setup, encounter)
    assert encounter.diagnoses[0].icd10_version_id == later.id
    assert first.id != later.id


def test_only_doctors_finish(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    with pytest.raises(Forbidden):
        svc.finish(db_session, who(setup.nurse), encounter.id, svc.Finish(disposition="home"))


# --- amendments --------------------------------------------------------------------------------


def signed(db_session, clinic):
    encounter = started(db_session, clinic)
    svc.update_encounter(
        db_session, who(clinic.doctor), encounter.id, {"findings": "Họng đỏ", "reason": "Ho"}
    )
    add(db_session, clinic, encounter, "I10", main=True)
    return finish_home(db_session, clinic, encounter)


def test_amendment_keeps_the_original(db_session, setup):
    encounter = signed(db_session, setup)
    signed_hash = encounter.content_hash
    svc.update_encounter(
        db_session,
        who(setup.doctor),
        encounter.id,
        {"findings": "Họng đỏ, amidan sưng", "reason": "Ho"},
        amendment_reason="Bổ sung khám họng",
    )
    assert encounter.findings == "Họng đỏ, amidan sưng"
    [amendment] = encounter.amendments
    assert amendment.changes == {"findings": {"old": "Họng đỏ", "new": "Họng đỏ, amidan sưng"}}
    assert amendment.reason == "Bổ sung khám họng"
    assert amendment.amended_by_id == setup.doctor.id
    assert amendment.content_hash == encounter.content_hash != signed_hash
    assert svc.verify(encounter)


def test_amendment_needs_a_reason_and_a_change(db_session, setup):
    encounter = signed(db_session, setup)
    with pytest.raises(Conflict):
        svc.update_encounter(db_session, who(setup.doctor), encounter.id, {"findings": "x"})
    with pytest.raises(ValidationFailed):
        svc.update_encounter(
            db_session,
            who(setup.doctor),
            encounter.id,
            {"findings": "Họng đỏ"},
            amendment_reason="why",
        )
    assert encounter.amendments == []


def test_only_the_signing_doctor_amends(db_session, setup):
    encounter = signed(db_session, setup)
    colleague = UserFactory(roles=("doctor",), facility=setup.facility)
    with pytest.raises(Forbidden):
        svc.update_encounter(
            db_session, who(colleague), encounter.id, {"findings": "y"}, amendment_reason="z"
        )


def test_work_is_audited(db_session, setup):
    encounter = signed(db_session, setup)
    kinds = set(
        db_session.scalars(
            select(AuditEvent.entity_type).where(AuditEvent.patient_id == encounter.patient_id)
        )
    )
    assert {"Encounter", "Diagnosis"} <= kinds
    details = set(
        db_session.scalars(
            select(AuditEvent.detail).where(
                AuditEvent.entity_type == "Encounter", AuditEvent.entity_id == str(encounter.id)
            )
        )
    )
    assert "signed" in details


# --- amending the diagnoses, the disposition; results after signing ---------------------------


def signed_with(db_session, clinic, *codes, order=False):
    """Signed with I10 as main and ``codes`` as secondary diagnoses (and an order)."""
    encounter = started(db_session, clinic)
    add(db_session, clinic, encounter, "I10", main=True)
    for code in codes:
        add(db_session, clinic, encounter, code)
    if order:
        svc.add_order(db_session, who(clinic.doctor), encounter.id, "23.0075.1494")
    return finish_home(db_session, clinic, encounter)


def coded(encounter):
    return [(d.icd10_code, d.is_main) for d in encounter.diagnoses]


def amend_add(db_session, clinic, encounter, code, main=False, reason="Sai mã", **extra):
    return svc.add_diagnosis(
        db_session,
        who(clinic.doctor),
        encounter.id,
        code,
        main,
        amendment_reason=reason,
        **extra,
    )


def test_secondary_diagnosis_added_after_signing_is_an_amendment(db_session, setup):
    encounter = signed_with(db_session, setup)
    signed_hash, signed_at = encounter.content_hash, encounter.finished_at
    main_id = encounter.diagnoses[0].id
    added = amend_add(db_session, setup, encounter, "E11.9", reason="Bỏ sót ĐTĐ")
    assert coded(encounter) == [("I10", True), ("E11.9", False)]
    [amendment] = encounter.amendments
    assert amendment.reason == "Bỏ sót ĐTĐ" and amendment.amended_by_id == setup.doctor.id
    assert amendment.changes == {
        "diagnoses": {
            "old": [{"id": main_id, "icd10": "I10", "main": True}],
            "new": [
                {"id": main_id, "icd10": "I10", "main": True},
                {"id": added.id, "icd10": "E11.9", "main": False},
            ],
        }
    }
    assert amendment.content_hash == encounter.content_hash != signed_hash
    assert svc.verify(encounter)
    # The signature stays the doctor's, at the time they signed.
    assert encounter.signed_by_id == setup.doctor.id and encounter.finished_at == signed_at
    assert encounter.status is EncounterStatus.FINISHED


def test_removed_diagnosis_after_signing_keeps_its_row(db_session, setup):
    encounter = signed_with(db_session, setup, "E11.9")
    wrong = encounter.diagnoses[1]
    svc.remove_diagnosis(
        db_session, who(setup.doctor), encounter.id, wrong.id, amendment_reason="Không có ĐTĐ"
    )
    assert coded(encounter) == [("I10", True)]
    row = db_session.get(Diagnosis, wrong.id)
    assert row.removed_at is not None and row.removed_by_id == setup.doctor.id
    assert [d.icd10_code for d in encounter.diagnosis_history] == ["I10", "E11.9"]
    [amendment] = encounter.amendments
    old, new = amendment.changes["diagnoses"]["old"], amendment.changes["diagnoses"]["new"]
    assert [d["icd10"] for d in old] == ["I10", "E11.9"] and [d["icd10"] for d in new] == ["I10"]
    # The signed content no longer lists it, and the stored hash says so.
    assert [d["icd10"] for d in svc.content(encounter)["diagnoses"]] == ["I10"]
    assert svc.verify(encounter) and amendment.content_hash == encounter.content_hash


def test_main_diagnosis_is_replaced_not_removed_after_signing(db_session, setup):
    encounter = signed_with(db_session, setup, "E11.9")
    main = encounter.diagnoses[0]
    with pytest.raises(Conflict):
        svc.remove_diagnosis(
            db_session, who(setup.doctor), encounter.id, main.id, amendment_reason="x"
        )
    assert encounter.amendments == [] and main.removed_at is None
    corrected = amend_add(db_session, setup, encounter, "K29.7", replaces=main.id)
    assert corrected.is_main and corrected.position == 0
    assert coded(encounter) == [("K29.7", True), ("E11.9", False)]
    assert db_session.get(Diagnosis, main.id).removed_at is not None
    [amendment] = encounter.amendments
    assert [(d["icd10"], d["main"]) for d in amendment.changes["diagnoses"]["new"]] == [
        ("K29.7", True),
        ("E11.9", False),
    ]


def test_replacing_a_secondary_keeps_its_place(db_session, setup):
    encounter = signed_with(db_session, setup, "E11.9", "Z00.0")
    wrong = encounter.diagnoses[1]
    corrected = amend_add(db_session, setup, encounter, "K29.7", replaces=wrong.id)
    assert not corrected.is_main and corrected.position == wrong.position
    assert coded(encounter) == [("I10", True), ("K29.7", False), ("Z00.0", False)]


def test_new_main_after_signing_demotes_the_old_one(db_session, setup):
    encounter = signed_with(db_session, setup)
    amend_add(db_session, setup, encounter, "K29.7", main=True)
    assert coded(encounter) == [("K29.7", True), ("I10", False)]
    assert len(encounter.amendments) == 1


def test_diagnosis_amendment_needs_a_reason_and_the_signing_doctor(db_session, setup):
    encounter = signed_with(db_session, setup, "E11.9")
    for reason in (None, "  "):
        with pytest.raises(Conflict) as refused:
            amend_add(db_session, setup, encounter, "K29.7", reason=reason)
        assert "amendment_reason" in refused.value.errors
        with pytest.raises(Conflict):
            svc.remove_diagnosis(
                db_session,
                who(setup.doctor),
                encounter.id,
                encounter.diagnoses[1].id,
                amendment_reason=reason,
            )
    colleague = who(UserFactory(roles=("doctor",), facility=setup.facility))
    with pytest.raises(Forbidden):
        svc.add_diagnosis(db_session, colleague, encounter.id, "K29.7", False, amendment_reason="x")
    with pytest.raises(Forbidden):
        svc.remove_diagnosis(
            db_session, colleague, encounter.id, encounter.diagnoses[1].id, amendment_reason="x"
        )
    with pytest.raises(ValidationFailed):
        amend_add(db_session, setup, encounter, "K29.7", reason="x" * 501)
    db_session.expire_all()
    assert coded(encounter) == [("I10", True), ("E11.9", False)]
    assert encounter.amendments == []


@pytest.mark.parametrize(
    ("code", "main", "words"),
    [
        ("U85", False, "may not be used"),
        ("B95.2", True, "may not be the main diagnosis"),
        ("N40", False, "male patients only"),
        ("J06", False, "J06.0, J06.9"),
        ("I10", False, None),  # already coded
    ],
)
def test_diagnosis_amendment_goes_through_the_icd10_rules(db_session, setup, code, main, words):
    encounter = signed_with(db_session, setup)  # the patient is a woman
    with pytest.raises((ValidationFailed, Conflict)) as refused:
        amend_add(db_session, setup, encounter, code, main=main)
    if words:
        assert words in refused.value.errors["icd10"][0]
    assert coded(encounter) == [("I10", True)] and encounter.amendments == []


def test_diagnosis_amendment_uses_the_list_of_the_end_date(db_session, setup):
    _, later = data.icd10_lists(db_session, dt.date(2098, 1, 1))
    encounter = signed_with(db_session, setup)
    # The episode ended on a day the later list (without K29.7) was in force.
    encounter.finished_at = dt.datetime(2098, 6, 1, 3, 0, tzinfo=dt.UTC)
    db_session.flush()
    with pytest.raises(ValidationFailed) as refused:
        amend_add(db_session, setup, encounter, data.DROPPED_LATER)
    assert "01/06/2098" in refused.value.errors["icd10"][0]
    added = amend_add(db_session, setup, encounter, "E11.9")
    assert added.icd10_version_id == later.id


def test_disposition_is_amended_by_the_signing_doctor(db_session, setup):
    encounter = signed_with(db_session, setup)
    follow_up = data.today() + dt.timedelta(days=7)
    request = svc.Finish(disposition="follow_up", follow_up_date=follow_up)
    colleague = who(UserFactory(roles=("doctor",), facility=setup.facility))
    with pytest.raises(Forbidden):
        svc.finish(db_session, colleague, encounter.id, request, amendment_reason="x")
    with pytest.raises(ValidationFailed) as refused:
        svc.finish(
            db_session,
            who(setup.doctor),
            encounter.id,
            svc.Finish(disposition="follow_up", follow_up_date=data.today()),
            amendment_reason="Hẹn tái khám",
        )
    assert "follow_up_date" in refused.value.errors
    svc.finish(
        db_session, who(setup.doctor), encounter.id, request, amendment_reason="Hẹn tái khám"
    )
    assert encounter.disposition.value == "follow_up" and encounter.follow_up_date == follow_up
    [amendment] = encounter.amendments
    assert amendment.changes == {
        "disposition": {"old": "home", "new": "follow_up"},
        "follow_up_date": {"old": None, "new": follow_up.isoformat()},
    }
    assert svc.verify(encounter) and amendment.content_hash == encounter.content_hash
    with pytest.raises(ValidationFailed):  # the same again changes nothing
        svc.finish(db_session, who(setup.doctor), encounter.id, request, amendment_reason="x")
    assert len(encounter.amendments) == 1


def test_an_amendment_request_never_signs_a_draft(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    with pytest.raises(Conflict):
        svc.finish(
            db_session,
            who(setup.doctor),
            encounter.id,
            svc.Finish(disposition="home"),
            amendment_reason="x",
        )
    assert encounter.status is EncounterStatus.IN_PROGRESS


def test_result_after_signing_is_stored_as_an_amendment(db_session, setup):
    encounter = signed_with(db_session, setup, order=True)
    [order] = encounter.orders
    signed_hash, signed_at = encounter.content_hash, encounter.finished_at
    first = svc.enter_result(db_session, who(setup.lab), order.id, "7.4")
    assert first.unit == "mmol/L" and order.status is OrderStatus.RESULTED
    [amendment] = encounter.amendments
    assert amendment.amended_by_id == setup.lab.id
    assert amendment.reason == "Result received after signing."
    assert amendment.changes == {
        "result": {
            "old": None,
            "new": {
                "id": first.id,
                "order_id": order.id,
                "service_code": "23.0075.1494",
                "value": "7.4",
                "unit": "mmol/L",
                "conclusion": None,
            },
        }
    }
    assert amendment.content_hash == encounter.content_hash != signed_hash
    assert svc.verify(encounter)
    assert encounter.signed_by_id == setup.doctor.id and encounter.finished_at == signed_at
    # A corrected result supersedes the first, with the reason given.
    second = svc.enter_result(
        db_session, who(setup.nurse), order.id, "6.9", amendment_reason="Máy XN hiệu chuẩn lại"
    )
    assert second.supersedes_id == first.id and svc.current_results(order) == [second]
    latest = encounter.amendments[-1]
    assert latest.reason == "Máy XN hiệu chuẩn lại" and latest.amended_by_id == setup.nurse.id
    assert latest.changes["result"]["old"]["value"] == "7.4"
    assert latest.changes["result"]["new"]["value"] == "6.9"
    assert svc.verify(encounter) and latest.content_hash == encounter.content_hash


def test_result_after_signing_still_refused_for_cancelled_orders_and_other_roles(db_session, setup):
    encounter = started(db_session, setup)
    add(db_session, setup, encounter, "I10", main=True)
    order = svc.add_order(db_session, who(setup.doctor), encounter.id, "18.0071.0028")
    svc.cancel_order(db_session, who(setup.doctor), encounter.id, order.id)
    finish_home(db_session, setup, encounter)
    with pytest.raises(Conflict):
        svc.enter_result(db_session, who(setup.lab), order.id, "Bình thường")
    with pytest.raises(Forbidden):
        svc.enter_result(db_session, who(setup.receptionist), order.id, "x")
    assert encounter.amendments == []
