"""Stock and dispensing rules, through the service: first expiry first out, never an
expired lot, never below zero, partial dispensing, returns, receipts, movements and audit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from his.errors import Conflict, Forbidden, NotFound, ValidationFailed
from his.localtime import local_today
from his.models import (
    AuditAction,
    AuditEvent,
    Dispense,
    DispenseKind,
    MovementKind,
    PrescriptionStatus,
    Role,
    StockLot,
    StockMovement,
    StockReceipt,
)
from his.services import stock
from his.services.stock import DispenseQuantity, ReceiptLine, ReceiptRequest, ReturnQuantity
from tests.factories import FacilityFactory, UserFactory
from tests.pharmacy_data import make_drug, make_lot, make_prescription, principal_of

TODAY = local_today()


def days(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


@pytest.fixture
def pharmacy(db_session):
    facility = FacilityFactory(code="91001")
    pharmacist = principal_of(UserFactory(roles=(Role.PHARMACIST,), facility=facility))
    drug = make_drug(db_session, facility, "AMO500", "Amoxicillin")
    return facility, pharmacist, drug


def lot_quantity(db_session, lot: StockLot) -> Decimal:
    db_session.expire(lot)
    return stock.quantity(lot.quantity)


def taken(record: Dispense) -> list[tuple[str, Decimal]]:
    return [(line.lot.lot_number, stock.quantity(line.quantity)) for line in record.lines]


# --- first expiry first out ----------------------------------------------------------------


def test_lots_are_taken_first_expiry_first_and_split_across_lots(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    late = make_lot(db_session, facility, drug, "LATE", days(400), 50)
    early = make_lot(db_session, facility, drug, "EARLY", days(10), 5)
    middle = make_lot(db_session, facility, drug, "MIDDLE", days(60), 4)
    rx = make_prescription(db_session, facility, [(drug, 12)])

    plan = stock.dispense_plan(db_session, pharmacist, rx.id)
    [item_plan] = plan.items
    assert [(t.lot.lot_number, t.quantity) for t in item_plan.takes] == [
        ("EARLY", 5),
        ("MIDDLE", 4),
        ("LATE", 3),
    ]
    assert item_plan.owed == 12 and item_plan.available == 59 and plan.complete

    record = stock.dispense(db_session, pharmacist, rx.id)
    assert taken(record) == [("EARLY", 5), ("MIDDLE", 4), ("LATE", 3)]
    assert lot_quantity(db_session, early) == 0
    assert lot_quantity(db_session, middle) == 0
    assert lot_quantity(db_session, late) == 47


def test_an_expired_lot_is_never_used(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    expired = make_lot(db_session, facility, drug, "OLD", days(-1), 100)
    today_lot = make_lot(db_session, facility, drug, "TODAY", TODAY, 3)
    rx = make_prescription(db_session, facility, [(drug, 5)])

    with pytest.raises(Conflict) as refused:
        stock.dispense(db_session, pharmacist, rx.id)
    # Names the drug, what is needed and what is really available (the expired 100 is not).
    assert "Amoxicillin" in refused.value.detail
    assert "5 needed" in refused.value.detail and "3 available" in refused.value.detail
    assert refused.value.code == "insufficient-stock"

    small = make_prescription(db_session, facility, [(drug, 3)])
    record = stock.dispense(db_session, pharmacist, small.id)
    assert taken(record) == [("TODAY", 3)]
    assert lot_quantity(db_session, expired) == 100
    assert lot_quantity(db_session, today_lot) == 0


def test_only_the_prescribed_drug_and_own_facility_stock_is_used(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    other_drug = make_drug(db_session, facility, "PARA500", "Paracetamol")
    make_lot(db_session, facility, other_drug, "P1", days(100), 100)
    elsewhere = FacilityFactory()
    make_lot(db_session, elsewhere, make_drug(db_session, elsewhere, "AMO500"), "X", days(9), 99)
    mine = make_lot(db_session, facility, drug, "A1", days(200), 10)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    assert taken(stock.dispense(db_session, pharmacist, rx.id)) == [("A1", 10)]
    assert lot_quantity(db_session, mine) == 0


# --- never below zero -------------------------------------------------------------------------


def test_too_little_stock_is_refused_and_changes_nothing(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    paracetamol = make_drug(db_session, facility, "PARA500", "Paracetamol")
    a = make_lot(db_session, facility, drug, "A1", days(30), 4)
    p = make_lot(db_session, facility, paracetamol, "P1", days(30), 100)
    rx = make_prescription(db_session, facility, [(paracetamol, 10), (drug, 6)])
    with pytest.raises(Conflict) as refused:
        stock.dispense(db_session, pharmacist, rx.id)
    assert "Not enough stock of Amoxicillin 500 mg: 6 needed, 4 available" in refused.value.detail
    # Keyed like the other item errors: the position in the request's items, here the
    # prescription's own items as none were given.
    assert list(refused.value.errors) == ["items.1.quantity"]
    assert lot_quantity(db_session, a) == 4 and lot_quantity(db_session, p) == 100
    assert db_session.scalar(select(func.count()).select_from(Dispense)) == 0
    assert db_session.scalar(select(func.count()).select_from(StockMovement)) == 0


def test_the_database_itself_refuses_a_negative_lot(db_session, pharmacy):
    facility, _pharmacist, drug = pharmacy
    lot = make_lot(db_session, facility, drug, "A1", days(30), 2)
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.execute(
            update(StockLot).where(StockLot.id == lot.id).values(quantity=StockLot.quantity - 3)
        )


def test_owing_nothing_is_a_conflict(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 20)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    stock.dispense(db_session, pharmacist, rx.id)
    with pytest.raises(Conflict, match="already been dispensed in full"):
        stock.dispense(db_session, pharmacist, rx.id)


# --- partial dispensing -----------------------------------------------------------------------


def test_partial_quantities_leave_the_rest_owed(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    paracetamol = make_drug(db_session, facility, "PARA500", "Paracetamol")
    make_lot(db_session, facility, drug, "A1", days(30), 100)
    make_lot(db_session, facility, paracetamol, "P1", days(30), 100)
    rx = make_prescription(db_session, facility, [(drug, 20), (paracetamol, 10)])
    amox, para = rx.items

    first = stock.dispense(db_session, pharmacist, rx.id, [DispenseQuantity(amox.id, Decimal(8))])
    assert taken(first) == [("A1", 8)]
    plan = stock.dispense_plan(db_session, pharmacist, rx.id)
    assert [(p.dispensed, p.owed) for p in plan.items] == [(8, 12), (0, 10)]
    waiting = stock.waiting_prescriptions(db_session, pharmacist)
    assert [(w.prescription.id, w.owed_items, w.started) for w in waiting] == [(rx.id, 2, True)]

    # More than owed is refused; the default then hands out exactly what is still owed.
    with pytest.raises(ValidationFailed) as refused:
        stock.dispense(db_session, pharmacist, rx.id, [DispenseQuantity(amox.id, Decimal(13))])
    assert "12 still owed" in refused.value.errors["items.0.quantity"][0]
    rest = stock.dispense(db_session, pharmacist, rx.id)
    assert sorted((line.item_id, stock.quantity(line.quantity)) for line in rest.lines) == sorted(
        [(amox.id, Decimal(12)), (para.id, Decimal(10))]
    )
    assert stock.waiting_prescriptions(db_session, pharmacist) == []


def test_allow_partial_hands_out_what_there_is(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 7)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    record = stock.dispense(db_session, pharmacist, rx.id, allow_partial=True)
    assert taken(record) == [("A1", 7)]
    [item_plan] = stock.dispense_plan(db_session, pharmacist, rx.id).items
    assert item_plan.owed == 3 and item_plan.available == 0 and item_plan.short == 3
    # With nothing left in stock, even a partial dispense has nothing to hand out.
    with pytest.raises(Conflict, match="Nothing to hand out"):
        stock.dispense(db_session, pharmacist, rx.id, allow_partial=True)


def test_bad_item_quantities_are_refused(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 70)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    other = make_prescription(db_session, facility, [(drug, 10)])
    with pytest.raises(ValidationFailed) as refused:
        stock.dispense(
            db_session,
            pharmacist,
            rx.id,
            [
                DispenseQuantity(other.items[0].id, Decimal(1)),
                DispenseQuantity(rx.items[0].id, Decimal("-1")),
            ],
        )
    assert set(refused.value.errors) == {"items.0.item_id", "items.1.quantity"}


# --- returns ----------------------------------------------------------------------------------


def test_returned_units_go_back_to_their_lot_and_are_owed_again(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    early = make_lot(db_session, facility, drug, "EARLY", days(20), 6)
    late = make_lot(db_session, facility, drug, "LATE", days(300), 50)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    stock.dispense(db_session, pharmacist, rx.id)  # 6 from EARLY, 4 from LATE
    item = rx.items[0]

    back = stock.return_units(
        db_session,
        pharmacist,
        rx.id,
        [ReturnQuantity(item.id, Decimal(2), lot_id=early.id)],
        reason="Dị ứng, ngừng thuốc",
    )
    assert back.kind is DispenseKind.RETURN and taken(back) == [("EARLY", 2)]
    assert lot_quantity(db_session, early) == 2 and lot_quantity(db_session, late) == 46
    # Without a lot, units go back to the lot taken from last.
    again = stock.return_units(
        db_session, pharmacist, rx.id, [ReturnQuantity(item.id, Decimal(5))], reason="Trả lại"
    )
    assert taken(again) == [("LATE", 4), ("EARLY", 1)]
    assert lot_quantity(db_session, late) == 50 and lot_quantity(db_session, early) == 3
    [item_plan] = stock.dispense_plan(db_session, pharmacist, rx.id).items
    assert item_plan.dispensed == 3 and item_plan.owed == 7
    movements = db_session.scalars(
        select(StockMovement)
        .where(StockMovement.kind == MovementKind.RETURN)
        .order_by(StockMovement.id)
    ).all()
    assert [(m.lot_id, stock.quantity(m.quantity)) for m in movements] == [
        (early.id, 2),
        (late.id, 4),
        (early.id, 1),
    ]
    assert all(m.reason for m in movements)


def test_more_than_was_handed_out_cannot_come_back(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    early = make_lot(db_session, facility, drug, "EARLY", days(20), 6)
    make_lot(db_session, facility, drug, "LATE", days(300), 50)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    item = rx.items[0]
    with pytest.raises(ValidationFailed) as nothing_out:
        stock.return_units(
            db_session, pharmacist, rx.id, [ReturnQuantity(item.id, Decimal(1))], reason="x"
        )
    assert "only 0 handed out" in nothing_out.value.errors["items.0.quantity"][0]
    stock.dispense(db_session, pharmacist, rx.id)
    with pytest.raises(ValidationFailed) as too_many:
        stock.return_units(
            db_session, pharmacist, rx.id, [ReturnQuantity(item.id, Decimal(11))], reason="x"
        )
    assert "only 10 handed out" in too_many.value.errors["items.0.quantity"][0]
    with pytest.raises(ValidationFailed) as from_lot:
        stock.return_units(
            db_session,
            pharmacist,
            rx.id,
            [ReturnQuantity(item.id, Decimal(7), lot_id=early.id)],
            reason="x",
        )
    assert "from this lot" in from_lot.value.errors["items.0.quantity"][0]
    with pytest.raises(ValidationFailed) as no_reason:
        stock.return_units(
            db_session, pharmacist, rx.id, [ReturnQuantity(item.id, Decimal(1))], reason=" "
        )
    assert "reason" in no_reason.value.errors
    assert lot_quantity(db_session, early) == 0
    assert (
        db_session.scalar(
            select(func.count()).select_from(Dispense).where(Dispense.kind == DispenseKind.RETURN)
        )
        == 0
    )


def returns_count(db_session) -> int:
    return db_session.scalar(
        select(func.count()).select_from(Dispense).where(Dispense.kind == DispenseKind.RETURN)
    )


@pytest.fixture
def handed_out_15(db_session, pharmacy):
    """15 handed out in two dispenses (12 + 3): 10 from SOON1, 5 from LATE."""
    facility, pharmacist, drug = pharmacy
    soon = make_lot(db_session, facility, drug, "SOON1", days(20), 10)
    late = make_lot(db_session, facility, drug, "LATE", days(300), 50)
    rx = make_prescription(db_session, facility, [(drug, 15)])
    item = rx.items[0]
    stock.dispense(db_session, pharmacist, rx.id, [DispenseQuantity(item.id, Decimal(12))])
    stock.dispense(db_session, pharmacist, rx.id, [DispenseQuantity(item.id, Decimal(3))])
    assert lot_quantity(db_session, soon) == 0 and lot_quantity(db_session, late) == 45
    return pharmacist, rx, item, soon, late


def test_the_entries_of_one_return_count_together(db_session, handed_out_15):
    pharmacist, rx, item, soon, late = handed_out_15
    # Each entry alone fits (15 out in all, 10 out from SOON1); together they are 25.
    with pytest.raises(ValidationFailed) as refused:
        stock.return_units(
            db_session,
            pharmacist,
            rx.id,
            [ReturnQuantity(item.id, Decimal(15)), ReturnQuantity(item.id, Decimal(10), soon.id)],
            reason="trả",
        )
    assert list(refused.value.errors) == ["items.0.quantity"]
    assert "the 25 listed in all" in refused.value.errors["items.0.quantity"][0]
    assert lot_quantity(db_session, soon) == 0 and lot_quantity(db_session, late) == 45
    assert returns_count(db_session) == 0
    [item_plan] = stock.dispense_plan(db_session, pharmacist, rx.id).items
    assert item_plan.dispensed == 15 and item_plan.owed == 0


def test_unnamed_units_go_only_to_what_the_named_lots_leave(db_session, handed_out_15):
    pharmacist, rx, item, soon, late = handed_out_15
    # LATE had only 5 out: named, it takes them all, so the unnamed 5 go to SOON1 and not
    # (as the latest lot taken) to LATE as well.
    back = stock.return_units(
        db_session,
        pharmacist,
        rx.id,
        [ReturnQuantity(item.id, Decimal(5)), ReturnQuantity(item.id, Decimal(5), late.id)],
        reason="trả",
    )
    assert sorted(taken(back)) == [("LATE", 5), ("SOON1", 5)]
    assert lot_quantity(db_session, late) == 50 and lot_quantity(db_session, soon) == 5
    # A named lot and the unnamed rest reaching the same lot make one line of it.
    again = stock.return_units(
        db_session,
        pharmacist,
        rx.id,
        [ReturnQuantity(item.id, Decimal(2), soon.id), ReturnQuantity(item.id, Decimal(3))],
        reason="trả",
    )
    assert taken(again) == [("SOON1", 5)]
    assert lot_quantity(db_session, soon) == 10
    # All 15 are back: not one more unit, named or not.
    for entries in (
        [ReturnQuantity(item.id, Decimal(1))],
        [ReturnQuantity(item.id, Decimal(1), soon.id)],
    ):
        with pytest.raises(ValidationFailed):
            stock.return_units(db_session, pharmacist, rx.id, entries, reason="trả")
    [item_plan] = stock.dispense_plan(db_session, pharmacist, rx.id).items
    assert item_plan.dispensed == 0 and item_plan.owed == 15


def test_a_lot_never_gets_back_more_than_it_gave(db_session, handed_out_15):
    pharmacist, rx, item, soon, late = handed_out_15
    stock.return_units(
        db_session, pharmacist, rx.id, [ReturnQuantity(item.id, Decimal(4), late.id)], reason="x"
    )
    # 1 left out from LATE, 10 from SOON1: 6 named for LATE is refused on that entry.
    with pytest.raises(ValidationFailed) as refused:
        stock.return_units(
            db_session,
            pharmacist,
            rx.id,
            [ReturnQuantity(item.id, Decimal(6), late.id), ReturnQuantity(item.id, Decimal(5))],
            reason="x",
        )
    assert list(refused.value.errors) == ["items.0.quantity"]
    assert "only 1 handed out from this lot" in refused.value.errors["items.0.quantity"][0]
    assert lot_quantity(db_session, late) == 49 and lot_quantity(db_session, soon) == 0


def test_the_same_item_and_lot_twice_in_one_return_is_refused(db_session, handed_out_15):
    pharmacist, rx, item, soon, _late = handed_out_15
    unnamed = ReturnQuantity(item.id, Decimal(1))
    named = ReturnQuantity(item.id, Decimal(1), soon.id)
    for entries in ([unnamed, unnamed], [named, named]):
        with pytest.raises(ValidationFailed) as refused:
            stock.return_units(db_session, pharmacist, rx.id, entries, reason="x")
        assert "listed twice" in refused.value.errors["items.1.item_id"][0]
    assert returns_count(db_session) == 0


def test_the_same_item_twice_in_one_dispense_is_refused(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    lot = make_lot(db_session, facility, drug, "A1", days(30), 100)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    item = rx.items[0]
    # Each entry alone is within the 10 owed; together they would hand out 16.
    with pytest.raises(ValidationFailed) as twice:
        stock.dispense(
            db_session,
            pharmacist,
            rx.id,
            [DispenseQuantity(item.id, Decimal(8)), DispenseQuantity(item.id, Decimal(8))],
        )
    assert list(twice.value.errors) == ["items.1.item_id"]
    # Also when the first entry was itself refused.
    with pytest.raises(ValidationFailed) as after_bad:
        stock.dispense(
            db_session,
            pharmacist,
            rx.id,
            [DispenseQuantity(item.id, Decimal(11)), DispenseQuantity(item.id, Decimal(5))],
        )
    assert set(after_bad.value.errors) == {"items.0.quantity", "items.1.item_id"}
    assert lot_quantity(db_session, lot) == 100
    assert db_session.scalar(select(func.count()).select_from(Dispense)) == 0


def test_a_short_item_is_keyed_by_its_place_in_the_request(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    paracetamol = make_drug(db_session, facility, "PARA500", "Paracetamol")
    make_lot(db_session, facility, drug, "A1", days(30), 4)
    make_lot(db_session, facility, paracetamol, "P1", days(30), 100)
    rx = make_prescription(db_session, facility, [(paracetamol, 10), (drug, 6)])
    para, amox = rx.items
    with pytest.raises(Conflict) as refused:
        stock.dispense(
            db_session,
            pharmacist,
            rx.id,
            [DispenseQuantity(amox.id, Decimal(6)), DispenseQuantity(para.id, Decimal(10))],
        )
    assert refused.value.code == "insufficient-stock"
    assert list(refused.value.errors) == ["items.0.quantity"]
    assert "Not enough stock of Amoxicillin" in refused.value.errors["items.0.quantity"][0]


# --- which prescriptions, and who ---------------------------------------------------------------


def test_only_a_signed_valid_prescription_of_ones_facility_is_dispensed(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 100)
    draft = make_prescription(db_session, facility, [(drug, 1)], status=PrescriptionStatus.DRAFT)
    replaced = make_prescription(
        db_session, facility, [(drug, 1)], status=PrescriptionStatus.REPLACED
    )
    cancelled = make_prescription(
        db_session, facility, [(drug, 1)], status=PrescriptionStatus.CANCELLED
    )
    stale = make_prescription(db_session, facility, [(drug, 1)], valid_until=days(-1))
    elsewhere = FacilityFactory()
    foreign = make_prescription(
        db_session, elsewhere, [(make_drug(db_session, elsewhere, "AMO500"), 1)]
    )
    for missing in (draft, foreign):
        with pytest.raises(NotFound):
            stock.dispense(db_session, pharmacist, missing.id)
    with pytest.raises(Conflict, match="replaced"):
        stock.dispense(db_session, pharmacist, replaced.id)
    with pytest.raises(Conflict, match="cancelled"):
        stock.dispense(db_session, pharmacist, cancelled.id)
    with pytest.raises(Conflict, match="valid for dispensing until"):
        stock.dispense(db_session, pharmacist, stale.id)
    # Valid through its last day.
    last_day = make_prescription(db_session, facility, [(drug, 1)], valid_until=TODAY)
    assert stock.dispense(db_session, pharmacist, last_day.id).lines


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.RECEPTIONIST, Role.ADMIN, Role.NURSE])
def test_only_pharmacists_dispense(db_session, pharmacy, role):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 100)
    rx = make_prescription(db_session, facility, [(drug, 5)])
    other = principal_of(UserFactory(roles=(role,), facility=facility))
    with pytest.raises(Forbidden):
        stock.dispense(db_session, other, rx.id)
    stock.dispense(db_session, pharmacist, rx.id)
    with pytest.raises(Forbidden):
        stock.return_units(
            db_session, other, rx.id, [ReturnQuantity(rx.items[0].id, Decimal(1))], reason="x"
        )


def test_waiting_list_is_oldest_first_and_leaves_out_the_done(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "A1", days(30), 100)
    now = dt.datetime.now(dt.UTC)
    newer = make_prescription(db_session, facility, [(drug, 1)], signed_at=now)
    older = make_prescription(
        db_session, facility, [(drug, 1)], signed_at=now - dt.timedelta(hours=2)
    )
    done = make_prescription(
        db_session, facility, [(drug, 1)], signed_at=now - dt.timedelta(hours=3)
    )
    stock.dispense(db_session, pharmacist, done.id)
    make_prescription(db_session, facility, [(drug, 1)], valid_until=days(-1))
    make_prescription(db_session, facility, [(drug, 1)], status=PrescriptionStatus.REPLACED)
    make_prescription(db_session, facility, [(drug, 1)], status=PrescriptionStatus.DRAFT)
    elsewhere = FacilityFactory()
    make_prescription(db_session, elsewhere, [(make_drug(db_session, elsewhere, "X"), 1)])
    waiting = stock.waiting_prescriptions(db_session, pharmacist)
    assert [w.prescription.id for w in waiting] == [older.id, newer.id]
    doctor = principal_of(UserFactory(roles=(Role.DOCTOR,), facility=facility))
    with pytest.raises(Forbidden):
        stock.waiting_prescriptions(db_session, doctor)


# --- movements and audit ---------------------------------------------------------------------


def test_every_quantity_change_is_a_movement_with_an_audit_row(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    early = make_lot(db_session, facility, drug, "EARLY", days(20), 3)
    late = make_lot(db_session, facility, drug, "LATE", days(300), 50)
    rx = make_prescription(db_session, facility, [(drug, 5)])
    record = stock.dispense(db_session, pharmacist, rx.id, note="Quầy 1")
    movements = db_session.scalars(
        select(StockMovement).where(StockMovement.dispense_id == record.id).order_by("id")
    ).all()
    assert [(m.lot_id, m.kind, stock.quantity(m.quantity)) for m in movements] == [
        (early.id, MovementKind.DISPENSE, Decimal(-3)),
        (late.id, MovementKind.DISPENSE, Decimal(-2)),
    ]
    assert all(m.by_id == pharmacist.user_id for m in movements)
    events = db_session.scalars(
        select(AuditEvent).where(AuditEvent.patient_id == rx.patient_id).order_by(AuditEvent.id)
    ).all()
    moved = [e for e in events if e.entity_type == "StockMovement"]
    assert sorted(int(e.entity_id) for e in moved) == sorted(m.id for m in movements)
    assert all(e.action is AuditAction.CREATE and e.user_id == pharmacist.user_id for e in moved)
    [handed] = [e for e in events if e.entity_type == "Dispense"]
    assert handed.entity_id == str(record.id)


# --- receiving ---------------------------------------------------------------------------------


def test_a_receipt_makes_lots_tops_up_existing_ones_and_is_audited(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    existing = make_lot(db_session, facility, drug, "L1", days(300), 10, unit_cost=1000)
    para = make_drug(db_session, facility, "PARA500", "Paracetamol")
    received = stock.receive_stock(
        db_session,
        pharmacist,
        ReceiptRequest(
            supplier="Công ty Dược An Giang",
            invoice_number="HD-0001",
            lines=[
                ReceiptLine("AMO500", "L1", days(300), Decimal(30), 1400),
                ReceiptLine(" PARA500 ", "P9", days(500), Decimal(200), 300),
            ],
        ),
    )
    receipt = received.receipt
    assert receipt.received_by_id == pharmacist.user_id and receipt.invoice_number == "HD-0001"
    topped, new = received.lines
    assert topped.lot.id == existing.id and not topped.created
    assert lot_quantity(db_session, existing) == 40
    assert existing.unit_cost == 1300  # (10 × 1000 + 30 × 1400) / 40
    assert new.created and new.lot.drug_code == para.code and new.lot.quantity == 200
    movements = db_session.scalars(
        select(StockMovement).where(StockMovement.receipt_id == receipt.id).order_by("id")
    ).all()
    assert [(m.lot_id, m.kind, stock.quantity(m.quantity)) for m in movements] == [
        (existing.id, MovementKind.RECEIPT, Decimal(30)),
        (new.lot.id, MovementKind.RECEIPT, Decimal(200)),
    ]
    audited = set(
        db_session.execute(
            select(AuditEvent.entity_type, AuditEvent.entity_id).where(
                AuditEvent.user_id == pharmacist.user_id
            )
        )
    )
    assert ("StockReceipt", str(receipt.id)) in audited
    assert {("StockMovement", str(m.id)) for m in movements} <= audited


def test_two_lines_of_one_new_lot_make_one_lot(db_session, pharmacy):
    _facility, pharmacist, _drug = pharmacy
    received = stock.receive_stock(
        db_session,
        pharmacist,
        ReceiptRequest(
            lines=[
                ReceiptLine("AMO500", "N1", days(300), Decimal(10), 1000),
                ReceiptLine("AMO500", "N1", days(300), Decimal(30), 2000),
                ReceiptLine("AMO500", "N1", days(301), Decimal(5), 1000),  # another expiry
            ]
        ),
    )
    first, second, other = received.lines
    assert first.lot is second.lot and first.created and not second.created
    assert other.lot is not first.lot
    assert lot_quantity(db_session, first.lot) == 40 and first.lot.unit_cost == 1750
    assert db_session.scalar(select(func.count()).select_from(StockMovement)) == 3


def test_receipt_rules(db_session, pharmacy):
    facility, pharmacist, _drug = pharmacy
    later = make_drug(db_session, facility, "LATER", "Cefuroxim", valid_from=days(30))
    with pytest.raises(ValidationFailed) as refused:
        stock.receive_stock(
            db_session,
            pharmacist,
            ReceiptRequest(
                lines=[
                    ReceiptLine("NOPE", "L1", days(100), Decimal(1), 1),
                    ReceiptLine("AMO500", "L2", days(-1), Decimal(1), 1),
                    ReceiptLine("AMO500", "L3", days(100), Decimal(0), 1),
                    ReceiptLine("AMO500", "", days(100), Decimal(1), -5),
                    ReceiptLine(later.code, "L5", None, Decimal("1.0001"), None),
                ]
            ),
        )
    errors = refused.value.errors
    assert "No drug with code NOPE" in errors["lines.0.drug_code"][0]
    assert "expired" in errors["lines.1.expiry_date"][0]
    assert "more than zero" in errors["lines.2.quantity"][0]
    assert set(errors) >= {
        "lines.3.lot_number",
        "lines.3.unit_cost",
        "lines.4.drug_code",  # not yet valid in the catalog
        "lines.4.expiry_date",
        "lines.4.quantity",
        "lines.4.unit_cost",
    }
    assert db_session.scalar(select(func.count()).select_from(StockReceipt)) == 0
    with pytest.raises(ValidationFailed):
        stock.receive_stock(db_session, pharmacist, ReceiptRequest(lines=[]))
    doctor = principal_of(UserFactory(roles=(Role.DOCTOR,), facility=facility))
    with pytest.raises(Forbidden):
        stock.receive_stock(
            db_session,
            doctor,
            ReceiptRequest(lines=[ReceiptLine("AMO500", "L1", days(100), Decimal(1), 1)]),
        )
    # A lot expiring today may still be received (and dispensed today).
    ok = stock.receive_stock(
        db_session,
        pharmacist,
        ReceiptRequest(lines=[ReceiptLine("AMO500", "L1", TODAY, Decimal(1), 1)]),
    )
    assert ok.lines[0].created


# --- the stock list and opening stock ---------------------------------------------------------


def test_stock_list_flags_expiring_lots_and_keeps_expired_apart(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    make_lot(db_session, facility, drug, "SOON", days(30), 5)
    make_lot(db_session, facility, drug, "FAR", days(400), 50)
    make_lot(db_session, facility, drug, "GONE", days(-3), 8)
    make_lot(db_session, facility, drug, "EMPTY", days(200), 0)
    [amox] = stock.stock_overview(db_session, pharmacist)
    assert [(v.lot.lot_number, v.expiring_soon) for v in amox.lots] == [
        ("SOON", True),
        ("FAR", False),
    ]
    assert [(v.lot.lot_number, v.expired, v.days_left) for v in amox.expired_lots] == [
        ("GONE", True, -3)
    ]
    assert amox.available == 55 and amox.expiring_soon
    assert amox.name == "Amoxicillin 500 mg" and amox.unit == "viên"
    [narrow] = stock.stock_overview(db_session, pharmacist, expiring_within_days=10)
    assert not narrow.expiring_soon
    receptionist = principal_of(UserFactory(roles=(Role.RECEPTIONIST,), facility=facility))
    with pytest.raises(Forbidden):
        stock.stock_overview(db_session, receptionist)


def test_opening_stock_gives_two_lots_per_drug_one_near_expiry(db_session, pharmacy):
    facility, pharmacist, drug = pharmacy
    para = make_drug(db_session, facility, "PARA500", "Paracetamol")
    assert stock.receive_opening_stock(db_session, facility, TODAY) == 4
    overview = {s.drug_code: s for s in stock.stock_overview(db_session, pharmacist)}
    assert set(overview) == {drug.code, para.code}
    for entry in overview.values():
        near, far = entry.lots
        assert 20 <= near.days_left <= 40 and near.expiring_soon
        assert far.days_left > 365
    assert stock.receive_opening_stock(db_session, facility, TODAY) == 0  # idempotent
    # A demo prescription can be dispensed from it, near-expiry lot first.
    rx = make_prescription(db_session, facility, [(drug, 40)])
    lots = [lot for lot, _q in taken(stock.dispense(db_session, pharmacist, rx.id))]
    assert lots == [
        overview[drug.code].lots[0].lot.lot_number,
        overview[drug.code].lots[1].lot.lot_number,
    ]


def test_the_demo_stocks_every_demo_drug_at_every_demo_facility(db_session):
    from his.models import Drug, Facility
    from his.services.demo import load_demo

    load_demo(db_session, TODAY)
    facilities = db_session.scalars(select(Facility)).all()
    assert len(facilities) == 5
    for facility in facilities:
        codes = set(
            db_session.scalars(
                select(Drug.code).where(Drug.facility_id == facility.id, Drug.active.is_(True))
            )
        )
        assert len(codes) >= 50, facility.code
        lots = db_session.scalars(select(StockLot).where(StockLot.facility_id == facility.id)).all()
        by_code: dict[str, list[StockLot]] = {}
        for lot in lots:
            by_code.setdefault(lot.drug_code, []).append(lot)
        assert set(by_code) == codes, facility.code
        for code, pair in by_code.items():
            near, far = sorted(pair, key=lambda lot: lot.expiry_date)
            assert 20 <= (near.expiry_date - TODAY).days <= 40, code
            assert (far.expiry_date - TODAY).days > 365 and far.quantity > 0, code
