"""Drafts, signing with the national code, immutability and replacement."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from his.errors import Conflict, Forbidden, NotFound, ValidationFailed
from his.models import (
    AuditAction,
    AuditEvent,
    Dispense,
    EncounterStatus,
    EPrescriptionSubmission,
    PrescriptionStatus,
    PrescriptionType,
    Role,
    SubmissionStatus,
)
from his.services import prescription_rules as rules
from his.services import prescriptions as service
from his.services.access import Principal
from tests.factories import UserFactory
from tests.prescribing_data import (
    add_allergy,
    add_weight,
    make_setting,
    next_encounter,
    small_child,
)

pytestmark = pytest.mark.usefixtures("babel_context")

CODE = re.compile(r"^[A-Z0-9]{5}[0-9a-z]{7}-[cnh]$")
NOW = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)


def item(code="PARA500", dose="1", times=3, days=5, **extra) -> service.ItemInput:
    return service.ItemInput(
        drug_code=code, dose=Decimal(dose), times_per_day=times, days=days, **extra
    )


def rx_input(*items, **extra) -> service.PrescriptionInput:
    return service.PrescriptionInput(items=list(items) or [item()], **extra)


@pytest.fixture
def s(db_session):
    return make_setting(db_session)


@pytest.fixture
def doctor(s):
    return Principal.for_user(s.doctor)


def test_a_draft_computes_quantities_and_names_by_active_ingredient(db_session, s, doctor):
    checked = service.create_draft(
        db_session,
        doctor,
        s.encounter.id,
        rx_input(
            item("PARA500", "1", 3, 5), item("AMOX500", "0.5", 3, 5), item("SIRO", "2.5", 3, 3)
        ),
    )
    rx = checked.prescription
    assert checked.violations == []
    assert rx.status is PrescriptionStatus.DRAFT and rx.code is None
    assert rx.rx_type is PrescriptionType.OTHER
    para, amox, siro = rx.items
    assert para.drug_name == "Paracetamol 500 mg (Panadol)"
    assert amox.drug_name == "Amoxicillin 500 mg"
    assert para.computed_quantity == para.quantity == 15
    # 0.5 × 3 × 5 = 7.5 capsules: counted units are rounded up.
    assert amox.computed_quantity == 8
    # A syrup is measured in ml and keeps its decimals.
    assert siro.computed_quantity == Decimal("22.5")
    assert para.route == "uống"
    events = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "Prescription", AuditEvent.action == AuditAction.CREATE
        )
    ).all()
    assert [e.entity_id for e in events] == [str(rx.id)]


def test_only_doctors_prescribe_and_sign(db_session, s):
    nurse = Principal.for_user(UserFactory(roles=(Role.NURSE,), facility=s.facility))
    with pytest.raises(Forbidden):
        service.create_draft(db_session, nurse, s.encounter.id, rx_input())
    draft = service.create_draft(
        db_session, Principal.for_user(s.doctor), s.encounter.id, rx_input()
    )
    with pytest.raises(Forbidden):
        service.sign(db_session, nurse, draft.id)


def test_another_facilitys_encounter_is_missing(db_session, s):
    other = make_setting(db_session, facility_code="92002")
    with pytest.raises(NotFound):
        service.create_draft(
            db_session, Principal.for_user(other.doctor), s.encounter.id, rx_input()
        )


def test_a_finished_encounter_takes_no_new_prescription(db_session, s, doctor):
    s.encounter.status = EncounterStatus.FINISHED
    db_session.flush()
    with pytest.raises(Conflict):
        service.create_draft(db_session, doctor, s.encounter.id, rx_input())


def test_a_drug_not_in_the_catalog_cannot_be_saved(db_session, s, doctor):
    with pytest.raises(ValidationFailed) as caught:
        service.create_draft(db_session, doctor, s.encounter.id, rx_input(item("NOPE")))
    assert "items.0.drug_code" in caught.value.errors
    assert caught.value.extra["violations"][0]["rule"] == rules.DRUG_NOT_IN_CATALOG


def test_a_draft_keeps_violations_and_signing_refuses_them(db_session, s, doctor):
    draft = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("PARA500", days=31))
    )
    assert [v.rule for v in draft.violations] == [rules.DAYS_OVER_LIMIT]
    with pytest.raises(ValidationFailed) as caught:
        service.sign(db_session, doctor, draft.id, now=NOW)
    assert caught.value.status == 422
    assert caught.value.errors["items.0.days"]
    assert caught.value.extra["violations"][0]["rule"] == rules.DAYS_OVER_LIMIT
    assert draft.prescription.code is None
    fixed = service.update_draft(db_session, doctor, draft.id, rx_input(item("PARA500", days=30)))
    assert fixed.violations == []
    signed = service.sign(db_session, doctor, draft.id, now=NOW)
    assert signed.status is PrescriptionStatus.SIGNED


def test_signing_gives_the_national_code_and_queues_the_submission(db_session, s, doctor):
    data = rx_input(item(dose="0.5"), weight_kg=Decimal("62.5"))
    draft = service.create_draft(db_session, doctor, s.encounter.id, data)
    rx = service.sign(db_session, doctor, draft.id, now=NOW)
    assert CODE.match(rx.code), rx.code
    assert rx.code.startswith("91001") and rx.code.endswith("-c") and len(rx.code) == 14
    assert rx.signed_at == NOW and rx.signed_by_id == s.doctor.id
    assert rx.valid_until == dt.date(2026, 12, 3)  # 5 days after the day of issue
    assert rx.content_hash == service.content_hash(rx) and len(rx.content_hash) == 64
    signed_hash = rx.content_hash
    db_session.expire_all()  # read back as stored: still the same content
    assert service.content_hash(rx) == signed_hash
    [submission] = db_session.scalars(
        select(EPrescriptionSubmission).where(EPrescriptionSubmission.prescription_id == rx.id)
    ).all()
    assert submission.status is SubmissionStatus.PENDING
    assert submission.payload["ma_don_thuoc"] == rx.code


def test_codes_are_random_and_unique(db_session, s, doctor):
    codes = set()
    for _ in range(12):
        encounter = next_encounter(db_session, s)
        draft = service.create_draft(db_session, doctor, encounter.id, rx_input())
        codes.add(service.sign(db_session, doctor, draft.id, now=NOW).code)
    assert len(codes) == 12
    randoms = sorted(code[5:12] for code in codes)
    # Not a sequence: consecutive signings do not give consecutive codes.
    assert len({int(r, 36) - int(randoms[0], 36) for r in randoms}) == 12
    assert all(CODE.match(code) for code in codes)


def test_a_drawn_code_already_used_is_drawn_again(db_session, s, doctor, monkeypatch):
    first = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    taken = first.code[5:12]
    draws = iter(list(taken) + list("zzzzzzz"))
    monkeypatch.setattr(service.secrets, "choice", lambda alphabet: next(draws))
    draft = service.create_draft(db_session, doctor, next_encounter(db_session, s).id, rx_input())
    second = service.sign(db_session, doctor, draft.id)
    assert second.code == "91001zzzzzzz-c"


def test_type_follows_the_drugs(db_session, s, doctor):
    narcotic = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("MORPH10", "1", 2, 5))
    )
    assert narcotic.rx_type is PrescriptionType.NARCOTIC
    assert service.sign(db_session, doctor, narcotic.id).code.endswith("-n")
    psycho = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("DIAZ5", "1", 1, 10))
    )
    assert service.sign(db_session, doctor, psycho.id).code.endswith("-h")
    mixed = service.create_draft(
        db_session,
        doctor,
        next_encounter(db_session, s).id,
        rx_input(item("MORPH10", "1", 2, 5), item("PARA500")),
    )
    assert [v.rule for v in mixed.violations] == [rules.CONTROLLED_NOT_ALONE]
    with pytest.raises(ValidationFailed):
        service.sign(db_session, doctor, mixed.id)


def test_a_signed_prescription_never_changes(db_session, s, doctor):
    rx = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    with pytest.raises(Conflict):
        service.update_draft(db_session, doctor, rx.id, rx_input(item(days=2)))
    with pytest.raises(Conflict):
        service.sign(db_session, doctor, rx.id)
    with pytest.raises(Conflict):
        service.cancel_draft(db_session, doctor, rx.id)
    assert [i.days for i in rx.items] == [5]


def test_replace_issues_a_new_signed_prescription(db_session, s, doctor):
    old = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    s.encounter.status = EncounterStatus.FINISHED  # errors are found after the visit
    db_session.flush()
    new = service.replace(
        db_session, doctor, old.id, "Sai liều", rx_input(item("PARA500", "1", 2, 5))
    )
    assert new.status is PrescriptionStatus.SIGNED and CODE.match(new.code)
    assert new.code != old.code
    assert new.replaces_id == old.id and new.replacement_reason == "Sai liều"
    assert old.status is PrescriptionStatus.REPLACED
    assert [i.quantity for i in new.items] == [10]
    assert old.items[0].quantity == 15  # the old one is kept as it was
    submissions = db_session.scalars(select(EPrescriptionSubmission.prescription_id)).all()
    assert new.id in submissions
    with pytest.raises(Conflict):  # a replaced one cannot be replaced again
        service.replace(db_session, doctor, old.id, "again", rx_input())


def test_replace_needs_a_reason_and_obeys_the_rules(db_session, s, doctor):
    old = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    with pytest.raises(ValidationFailed):
        service.replace(db_session, doctor, old.id, "  ", rx_input())
    with pytest.raises(ValidationFailed):
        service.replace(db_session, doctor, old.id, "Thêm ngày", rx_input(item(days=45)))
    assert old.status is PrescriptionStatus.SIGNED


def test_a_dispensed_prescription_is_not_replaced(db_session, s, doctor):
    old = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    pharmacist = UserFactory(roles=(Role.PHARMACIST,), facility=s.facility)
    db_session.add(
        Dispense(prescription_id=old.id, facility_id=s.facility.id, pharmacist_id=pharmacist.id)
    )
    db_session.flush()
    with pytest.raises(Conflict):
        service.replace(db_session, doctor, old.id, "Sai", rx_input())


def test_cancel_a_draft(db_session, s, doctor):
    draft = service.create_draft(db_session, doctor, s.encounter.id, rx_input())
    assert service.cancel_draft(db_session, doctor, draft.id).status is PrescriptionStatus.CANCELLED
    with pytest.raises(Conflict):
        service.sign(db_session, doctor, draft.id)


def test_a_small_child_is_prefilled_from_the_record(db_session):
    child = small_child(db_session, months=30, guardian="Trần Văn Bố")
    s = make_setting(db_session, patient=child)
    add_weight(db_session, s.encounter, "12.5")
    doctor = Principal.for_user(s.doctor)
    draft = service.create_draft(db_session, doctor, s.encounter.id, rx_input())
    assert draft.violations == []
    assert draft.age_months == 30 and draft.weight_kg == Decimal("12.5")
    assert draft.guardian_name == "Trần Văn Bố" and draft.guardian_id_number == "091080001234"


def test_a_small_child_without_guardian_or_weight_cannot_be_signed(db_session):
    s = make_setting(db_session, patient=small_child(db_session, months=30))
    doctor = Principal.for_user(s.doctor)
    draft = service.create_draft(db_session, doctor, s.encounter.id, rx_input())
    assert {v.rule for v in draft.violations} == {rules.CHILD_WEIGHT, rules.CHILD_GUARDIAN}
    with pytest.raises(ValidationFailed) as caught:
        service.sign(db_session, doctor, draft.id)
    assert set(caught.value.errors) == {"weight_kg", "guardian_name"}


def test_allergy_blocks_signing(db_session, s, doctor):
    add_allergy(db_session, s.patient, "amoxicillin")
    draft = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("PARA500"), item("AMOX500"))
    )
    assert [(v.rule, v.field) for v in draft.violations] == [(rules.ALLERGY, "items.1.drug_code")]
    with pytest.raises(ValidationFailed):
        service.sign(db_session, doctor, draft.id)


def test_validate_saves_nothing(db_session, s, doctor):
    from his.models import Prescription

    violations, computed = service.validate(
        db_session, doctor, s.encounter.id, rx_input(item("PARA500", days=40), item("NOPE"))
    )
    assert {v.rule for v in violations} == {rules.DAYS_OVER_LIMIT, rules.DRUG_NOT_IN_CATALOG}
    assert computed[0].computed_quantity == 120
    assert db_session.scalars(select(Prescription)).all() == []


def test_chronic_diagnosis_allows_90_days(db_session, s, doctor):
    from tests.prescribing_data import add_diagnosis

    add_diagnosis(db_session, s.encounter, s.icd, "I10")
    draft = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("AMLO5", "1", 1, 90))
    )
    assert draft.violations == []
    assert CODE.match(service.sign(db_session, doctor, draft.id).code)


def test_the_same_ingredient_on_two_prescriptions_of_one_encounter(db_session, s, doctor):
    first = service.sign(
        db_session,
        doctor,
        service.create_draft(db_session, doctor, s.encounter.id, rx_input(item("AMLO5"))).id,
    )
    second = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(item("AMLO5", days=20))
    )
    [found] = second.violations
    assert found.rule == rules.DUPLICATE_INGREDIENT and first.code in found.message
    with pytest.raises(ValidationFailed):
        service.sign(db_session, doctor, second.id)
    # A draft counts too, and is named as one; a cancelled one does not.
    third = service.create_draft(db_session, doctor, s.encounter.id, rx_input(item("PARA500")))
    fourth = service.create_draft(db_session, doctor, s.encounter.id, rx_input(item("PARA500")))
    assert [v.rule for v in fourth.violations] == [rules.DUPLICATE_INGREDIENT]
    assert "draft" in fourth.violations[0].message
    service.cancel_draft(db_session, doctor, third.id)
    service.cancel_draft(db_session, doctor, second.id)
    assert service.sign(db_session, doctor, fourth.id).status is PrescriptionStatus.SIGNED
    # Replacing a prescription by one with the same drug is no duplicate of itself.
    new = service.replace(db_session, doctor, first.id, "Sai liều", rx_input(item("AMLO5", days=7)))
    assert new.status is PrescriptionStatus.SIGNED
    # Its own draft is not "another prescription" when the builder checks it while editing.
    draft = service.create_draft(db_session, doctor, s.encounter.id, rx_input(item("AMOX500")))
    violations, _ = service.validate(
        db_session, doctor, s.encounter.id, rx_input(item("AMOX500")), prescription_id=draft.id
    )
    assert violations == []
    updated = service.update_draft(db_session, doctor, draft.id, rx_input(item("AMOX500")))
    assert updated.violations == []


def test_a_childs_age_in_months_must_agree_with_the_birth_date(db_session):
    child = small_child(db_session, months=30, guardian="Trần Văn Bố")
    s = make_setting(db_session, patient=child)
    doctor = Principal.for_user(s.doctor)
    draft = service.create_draft(
        db_session, doctor, s.encounter.id, rx_input(age_months=900, weight_kg=Decimal("12"))
    )
    assert [v.rule for v in draft.violations] == [rules.AGE_MONTHS_MISMATCH]
    with pytest.raises(ValidationFailed) as caught:
        service.sign(db_session, doctor, draft.id)
    assert "900" in caught.value.errors["age_months"][0]


def test_replace_holds_the_old_prescription_row(db_session, s, doctor):
    """On PostgreSQL the old prescription is read FOR UPDATE, as dispensing reads it, so a
    dispense and a replacement of it queue up instead of both succeeding."""
    if db_session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks: its write lock already serialises writers")
    from sqlalchemy import event

    old = service.sign(
        db_session, doctor, service.create_draft(db_session, doctor, s.encounter.id, rx_input()).id
    )
    seen: list[str] = []
    connection = db_session.connection()

    def remember(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(connection, "before_cursor_execute", remember)
    try:
        service.replace(db_session, doctor, old.id, "Sai liều", rx_input(item(days=4)))
    finally:
        event.remove(connection, "before_cursor_execute", remember)
    locked = [q for q in seen if "FOR UPDATE" in q and "FROM prescription" in q]
    assert locked and "prescription.id =" in locked[0]


def test_dose_finer_than_the_stored_decimals_is_refused(db_session, s, doctor):
    with pytest.raises(ValidationFailed) as caught:
        service.create_draft(db_session, doctor, s.encounter.id, rx_input(item(dose="0.0001")))
    assert "0.001" in caught.value.errors["items.0.dose"][0]
