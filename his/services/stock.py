"""Drug stock by lot: receiving deliveries, dispensing signed prescriptions, returns.

Lots are taken first-expiry-first-out and an expired lot is never handed out. A lot's
quantity is only ever changed by one guarded UPDATE (``quantity >= :q`` in its WHERE), so
when two pharmacists take the last units at the same moment the second UPDATE matches no
row and that whole dispense is refused: the stock never goes below zero, and the database's
CHECK backs this up. Every change of a quantity is a ``stock_movement`` row and an audit row.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from his.errors import Conflict, NotFound, ValidationFailed
from his.localtime import local_today
from his.models import (
    AuditAction,
    Dispense,
    DispenseKind,
    DispenseLine,
    Drug,
    Facility,
    MovementKind,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    Role,
    StockLot,
    StockMovement,
    StockReceipt,
)
from his.services import audit, catalogs
from his.services.access import Principal

# Lots expiring within this many days are flagged on the stock list, so they are used or
# sent back before they expire. Overridable per request.
EXPIRY_WARNING_DAYS = 90

# Who receives stock, who hands out drugs, and who may look at stock levels.
RECEIVING_ROLES = (Role.PHARMACIST, Role.ADMIN)
DISPENSING_ROLES = (Role.PHARMACIST,)
PHARMACY_READ_ROLES = (Role.PHARMACIST, Role.ADMIN)
STOCK_READ_ROLES = (Role.PHARMACIST, Role.ADMIN, Role.DOCTOR, Role.NURSE)

MAX_RECEIPT_LINES = 200
QUANTUM = Decimal("0.001")  # quantities are NUMERIC(12, 3)
MAX_QUANTITY = Decimal("999999999")


def quantity(value: object) -> Decimal:
    """A quantity with the database's three decimals, whatever the driver handed back."""
    return Decimal(str(value or 0)).quantize(QUANTUM)


def display_quantity(value: Decimal) -> str:
    """20.000 → "20", 2.500 → "2.5": how a pharmacist reads a count."""
    return format(quantity(value).normalize(), "f")


def _date(value: dt.date) -> str:
    return value.strftime("%d/%m/%Y")


def drug_label(drug: Drug | None, code: str) -> str:
    if drug is None:
        return code
    brand = f" ({drug.brand})" if drug.brand else ""
    return f"{drug.active_ingredient}{brand} {drug.strength}"


# --- receiving ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptLine:
    drug_code: str
    lot_number: str
    expiry_date: dt.date | None  # None when the form's date could not be read: refused
    quantity: Decimal | None  # None when the form's number could not be read: refused
    unit_cost: int | None


@dataclass(frozen=True)
class ReceiptRequest:
    lines: list[ReceiptLine]
    supplier: str | None = None
    invoice_number: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ReceivedLine:
    lot: StockLot
    drug: Drug
    quantity: Decimal
    created: bool  # a new lot, not a top-up of one already in stock


@dataclass(frozen=True)
class ReceivedStock:
    receipt: StockReceipt
    lines: list[ReceivedLine]


def _check_receipt(
    session: Session, facility_id: int, req: ReceiptRequest, today: dt.date
) -> dict[int, Drug]:
    errors: dict[str, list[str]] = {}
    drugs: dict[int, Drug] = {}
    looked_up: dict[str, Drug | None] = {}
    if not req.lines:
        errors["lines"] = [str(_l("Add at least one line."))]
    elif len(req.lines) > MAX_RECEIPT_LINES:
        errors["lines"] = [
            str(_l("At most %(count)s lines in one receipt.", count=MAX_RECEIPT_LINES))
        ]
    for n, line in enumerate(req.lines[:MAX_RECEIPT_LINES]):
        where = f"lines.{n}."
        code = line.drug_code.strip()
        if code and code not in looked_up:
            looked_up[code] = catalogs.drug_by_code(session, facility_id, code, today)
        drug = looked_up.get(code)
        if not code:
            errors[where + "drug_code"] = [str(_l("Enter the drug code."))]
        elif drug is None:
            errors[where + "drug_code"] = [
                str(_l("No drug with code %(code)s in your facility's catalog.", code=code))
            ]
        else:
            drugs[n] = drug
        lot = line.lot_number.strip()
        if not lot:
            errors[where + "lot_number"] = [str(_l("Enter the lot number."))]
        elif len(lot) > 50:
            errors[where + "lot_number"] = [str(_l("At most %(max)s characters.", max=50))]
        if line.expiry_date is None:
            errors[where + "expiry_date"] = [str(_l("Enter the expiry date."))]
        elif line.expiry_date < today:
            errors[where + "expiry_date"] = [
                str(
                    _l(
                        "This lot expired on %(date)s; expired drugs are not received.",
                        date=_date(line.expiry_date),
                    )
                )
            ]
        if line.quantity is None or not line.quantity.is_finite():
            errors[where + "quantity"] = [str(_l("Enter the quantity as a number."))]
        elif line.quantity <= 0:
            errors[where + "quantity"] = [str(_l("The quantity must be more than zero."))]
        elif line.quantity > MAX_QUANTITY or line.quantity != quantity(line.quantity):
            errors[where + "quantity"] = [
                str(_l("At most three decimals and less than a billion units."))
            ]
        if line.unit_cost is None:
            errors[where + "unit_cost"] = [str(_l("Enter the unit cost in VND."))]
        elif line.unit_cost < 0:
            errors[where + "unit_cost"] = [str(_l("The unit cost cannot be negative."))]
    if errors:
        raise ValidationFailed(str(_l("The stock could not be received.")), errors=errors)
    return drugs


def _movement(
    principal: Principal,
    lot: StockLot,
    kind: MovementKind,
    change: Decimal,
    *,
    receipt_id: int | None = None,
    dispense_id: int | None = None,
    reason: str | None = None,
) -> StockMovement:
    return StockMovement(
        facility_id=lot.facility_id,
        lot_id=lot.id,
        kind=kind,
        quantity=change,
        receipt_id=receipt_id,
        dispense_id=dispense_id,
        reason=reason,
        by_id=principal.user_id,
    )


def _record_movements(
    session: Session,
    principal: Principal,
    movements: list[StockMovement],
    patient_id: int | None = None,
) -> None:
    """Writes the movements and one audit row each; one flush for all of them, since a
    delivery can have hundreds of lines."""
    session.add_all(movements)
    session.flush()
    for movement in movements:
        audit.record(
            session,
            principal,
            AuditAction.CREATE,
            entity_type="StockMovement",
            entity_id=movement.id,
            patient_id=patient_id,
            detail=(f"{movement.kind.value} lot={movement.lot_id} change={movement.quantity:+}"),
        )


def receive_stock(
    session: Session, principal: Principal, req: ReceiptRequest, today: dt.date | None = None
) -> ReceivedStock:
    """Books one delivery: a new lot per (drug, lot number, expiry), or a top-up of the lot
    already in stock, whose unit cost becomes the weighted average of old and new."""
    principal.require_any(*RECEIVING_ROLES)
    if principal.facility_id is None:
        raise ValidationFailed(str(_l("Stock is kept per facility; yours is unknown.")))
    today = today or local_today()
    drugs = _check_receipt(session, principal.facility_id, req, today)
    receipt = StockReceipt(
        facility_id=principal.facility_id,
        supplier=(req.supplier or "").strip()[:200] or None,
        invoice_number=(req.invoice_number or "").strip()[:50] or None,
        note=(req.note or "").strip()[:500] or None,
        received_by_id=principal.user_id,
    )
    session.add(receipt)
    keys = {
        (drugs[n].code, line.lot_number.strip(), line.expiry_date)
        for n, line in enumerate(req.lines)
    }
    held = {
        (lot.drug_code, lot.lot_number, lot.expiry_date): lot
        for lot in session.scalars(
            select(StockLot)
            .where(
                StockLot.facility_id == principal.facility_id,
                tuple_(StockLot.drug_code, StockLot.lot_number, StockLot.expiry_date).in_(keys),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    made: dict[tuple[str, str, dt.date], StockLot] = {}
    received = []
    for n, line in enumerate(req.lines):
        assert line.quantity is not None and line.unit_cost is not None
        assert line.expiry_date is not None
        drug = drugs[n]
        amount = quantity(line.quantity)
        key = (drug.code, line.lot_number.strip(), line.expiry_date)
        lot = held.get(key) or made.get(key)
        created = lot is None
        if lot is None:
            lot = made[key] = StockLot(
                facility_id=principal.facility_id,
                drug_code=drug.code,
                lot_number=key[1],
                expiry_date=line.expiry_date,
                quantity=amount,
                unit_cost=line.unit_cost,
            )
            session.add(lot)
        else:
            before = quantity(lot.quantity)
            average = (before * lot.unit_cost + amount * line.unit_cost) / (before + amount)
            cost = int(average.to_integral_value())
            if key in made:  # a second line of a lot this receipt created: not yet stored
                lot.quantity = before + amount
                lot.unit_cost = cost
            else:
                session.execute(
                    update(StockLot)
                    .where(StockLot.id == lot.id)
                    .values(quantity=StockLot.quantity + amount, unit_cost=cost)
                    .execution_options(synchronize_session=False)
                )
                session.expire(lot, ["quantity", "unit_cost"])
        received.append(ReceivedLine(lot=lot, drug=drug, quantity=amount, created=created))
    session.flush()  # the receipt and the new lots, in one batch
    _record_movements(
        session,
        principal,
        [
            _movement(principal, r.lot, MovementKind.RECEIPT, r.quantity, receipt_id=receipt.id)
            for r in received
        ],
    )
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="StockReceipt",
        entity_id=receipt.id,
        detail=f"lines={len(received)}",
    )
    return ReceivedStock(receipt=receipt, lines=received)


# --- what is owed, and the first-expiry-first-out plan ----------------------------------------


def _visible_prescription(
    session: Session, principal: Principal, prescription_id: int, *, lock: bool = False
) -> Prescription:
    """Another facility's prescription is reported missing, so its existence does not leak.
    ``lock`` holds the row (PostgreSQL) so two dispenses of one prescription queue up
    instead of both handing out what is owed; SQLite's write lock already does that."""
    stmt = (
        select(Prescription)
        .where(
            Prescription.id == prescription_id,
            Prescription.facility_id == principal.facility_id,
            Prescription.status != PrescriptionStatus.DRAFT,
        )
        .options(
            selectinload(Prescription.items).selectinload(PrescriptionItem.drug),
            selectinload(Prescription.patient),
            selectinload(Prescription.prescriber),
        )
    )
    if lock:
        stmt = stmt.with_for_update(of=Prescription).execution_options(populate_existing=True)
    prescription = session.scalars(stmt).first()
    if prescription is None:
        raise NotFound(str(_l("No signed prescription has this id at your facility.")))
    return prescription


def net_dispensed(session: Session, item_ids: list[int]) -> dict[int, Decimal]:
    """Units handed out minus units brought back, per prescription item."""
    totals: dict[int, Decimal] = dict.fromkeys(item_ids, quantity(0))
    if not item_ids:
        return totals
    rows = session.execute(
        select(DispenseLine.item_id, Dispense.kind, func.sum(DispenseLine.quantity))
        .join(Dispense, Dispense.id == DispenseLine.dispense_id)
        .where(DispenseLine.item_id.in_(item_ids))
        .group_by(DispenseLine.item_id, Dispense.kind)
    )
    for item_id, kind, total in rows:
        sign = 1 if kind == DispenseKind.DISPENSE else -1
        totals[item_id] += sign * quantity(total)
    return totals


def usable_lots(
    session: Session, facility_id: int, drug_code: str, today: dt.date
) -> list[StockLot]:
    """Lots that may be handed out today, first expiry first; a lot expiring today is still
    usable, one that expired yesterday is not."""
    return list(
        session.scalars(
            select(StockLot)
            .where(
                StockLot.facility_id == facility_id,
                StockLot.drug_code == drug_code,
                StockLot.quantity > 0,
                StockLot.expiry_date >= today,
            )
            .order_by(StockLot.expiry_date, StockLot.received_at, StockLot.id)
            .execution_options(populate_existing=True)
        )
    )


@dataclass(frozen=True)
class LotTake:
    lot: StockLot
    quantity: Decimal


@dataclass
class ItemPlan:
    item: PrescriptionItem
    dispensed: Decimal  # net of returns
    owed: Decimal
    wanted: Decimal  # what this dispense should hand out
    available: Decimal  # usable stock of the drug (before this plan)
    takes: list[LotTake] = field(default_factory=list)

    @property
    def planned(self) -> Decimal:
        return sum((t.quantity for t in self.takes), quantity(0))

    @property
    def short(self) -> Decimal:
        return self.wanted - self.planned

    @property
    def drug_name(self) -> str:
        return self.item.drug_name


@dataclass(frozen=True)
class Returnable:
    """Units of an item still out with the patient from one lot: what may come back."""

    item: PrescriptionItem
    lot: StockLot
    quantity: Decimal


@dataclass
class DispensePlan:
    prescription: Prescription
    today: dt.date
    items: list[ItemPlan]
    returnable: list[Returnable] = field(default_factory=list)

    @property
    def owed(self) -> bool:
        return any(p.owed > 0 for p in self.items)

    @property
    def complete(self) -> bool:
        """Everything owed can be handed out now from stock."""
        return all(p.short == 0 for p in self.items)


def _plan(
    session: Session,
    prescription: Prescription,
    wanted: dict[int, Decimal] | None,
    today: dt.date,
) -> DispensePlan:
    """``wanted`` maps item id → quantity; None means everything still owed."""
    dispensed = net_dispensed(session, [i.id for i in prescription.items])
    # Shared across items: two items of one drug must not both count the same units.
    left: dict[int, Decimal] = {}
    lots_by_code: dict[str, list[StockLot]] = {}
    plans = []
    for item in prescription.items:
        owed = max(quantity(item.quantity) - dispensed[item.id], quantity(0))
        want = owed if wanted is None else wanted.get(item.id, quantity(0))
        if item.drug_code not in lots_by_code:
            lots_by_code[item.drug_code] = usable_lots(
                session, prescription.facility_id, item.drug_code, today
            )
            for lot in lots_by_code[item.drug_code]:
                left[lot.id] = quantity(lot.quantity)
        lots = lots_by_code[item.drug_code]
        plan = ItemPlan(
            item=item,
            dispensed=dispensed[item.id],
            owed=owed,
            wanted=want,
            available=sum((left[lot.id] for lot in lots), quantity(0)),
        )
        remaining = want
        for lot in lots:
            if remaining <= 0:
                break
            take = min(remaining, left[lot.id])
            if take > 0:
                plan.takes.append(LotTake(lot=lot, quantity=take))
                left[lot.id] -= take
                remaining -= take
        plans.append(plan)
    return DispensePlan(prescription=prescription, today=today, items=plans)


def _check_dispensable(prescription: Prescription, today: dt.date) -> None:
    if prescription.status is not PrescriptionStatus.SIGNED:
        messages = {
            PrescriptionStatus.REPLACED: _l(
                "This prescription was replaced by a newer one; dispense the new one."
            ),
            PrescriptionStatus.CANCELLED: _l("This prescription was cancelled."),
        }
        raise Conflict(
            str(messages.get(prescription.status, _l("Only a signed prescription is dispensed."))),
            errors={"status": [prescription.status.value]},
        )
    if prescription.valid_until is not None and prescription.valid_until < today:
        raise Conflict(
            str(
                _l(
                    "This prescription was valid for dispensing until %(date)s.",
                    date=_date(prescription.valid_until),
                )
            ),
            errors={"valid_until": [prescription.valid_until.isoformat()]},
        )


def dispense_plan(
    session: Session, principal: Principal, prescription_id: int, today: dt.date | None = None
) -> DispensePlan:
    """What a dispense of everything owed would take, lot by lot; for the pharmacist's
    screen. Shown for any prescription the pharmacy may see, dispensable or not."""
    principal.require_any(*PHARMACY_READ_ROLES)
    today = today or local_today()
    prescription = _visible_prescription(session, principal, prescription_id)
    audit.record_read(session, principal, "Prescription", prescription.id, prescription.patient_id)
    plan = _plan(session, prescription, None, today)
    for item_plan in plan.items:
        if item_plan.dispensed > 0:
            plan.returnable.extend(
                Returnable(item_plan.item, lot, out)
                for lot, out in _net_by_lot(session, item_plan.item.id)
            )
    return plan


@dataclass(frozen=True)
class DispenseQuantity:
    item_id: int
    quantity: Decimal | None  # None when a form's number could not be read: refused


def _wanted(
    prescription: Prescription,
    items: list[DispenseQuantity] | None,
    dispensed: dict[int, Decimal],
) -> dict[int, Decimal] | None:
    if items is None:
        return None
    by_id = {item.id: item for item in prescription.items}
    wanted: dict[int, Decimal] = {}
    errors: dict[str, list[str]] = {}
    # Each entry is checked against what is owed on its own, so an item listed twice would
    # be handed out twice over: refused, whether or not the first entry was valid.
    seen: set[int] = set()
    for n, entry in enumerate(items):
        where = f"items.{n}."
        item = by_id.get(entry.item_id)
        if item is None:
            errors[where + "item_id"] = [str(_l("No item with this id on this prescription."))]
            continue
        if entry.item_id in seen:
            errors[where + "item_id"] = [str(_l("This item is listed twice."))]
            continue
        seen.add(entry.item_id)
        amount = entry.quantity
        if amount is None or not amount.is_finite():
            errors[where + "quantity"] = [str(_l("Enter the quantity as a number."))]
            continue
        if amount < 0 or amount != quantity(amount):
            errors[where + "quantity"] = [
                str(_l("The quantity must be zero or more, with at most three decimals."))
            ]
            continue
        owed = max(quantity(item.quantity) - dispensed[item.id], quantity(0))
        if amount > owed:
            errors[where + "quantity"] = [
                str(
                    _l(
                        "%(drug)s: %(owed)s still owed; %(asked)s cannot be handed out.",
                        drug=item.drug_name,
                        owed=display_quantity(owed),
                        asked=display_quantity(amount),
                    )
                )
            ]
            continue
        wanted[item.id] = quantity(amount)
    if errors:
        raise ValidationFailed(str(_l("The quantities to dispense are not valid.")), errors=errors)
    return wanted


def dispense(
    session: Session,
    principal: Principal,
    prescription_id: int,
    items: list[DispenseQuantity] | None = None,
    *,
    allow_partial: bool = False,
    note: str | None = None,
    today: dt.date | None = None,
) -> Dispense:
    """Hands out a signed prescription: everything still owed, or the quantities given
    (less than owed is a partial dispense: the rest stays owed). With too little stock it
    is refused naming the drug, unless ``allow_partial``, which hands out what there is."""
    principal.require_any(*DISPENSING_ROLES)
    today = today or local_today()
    prescription = _visible_prescription(session, principal, prescription_id, lock=True)
    _check_dispensable(prescription, today)
    dispensed = net_dispensed(session, [i.id for i in prescription.items])
    if all(quantity(i.quantity) - dispensed[i.id] <= 0 for i in prescription.items):
        raise Conflict(str(_l("This prescription has already been dispensed in full.")))
    plan = _plan(session, prescription, _wanted(prescription, items, dispensed), today)
    # Errors name an entry by its position in the request's items, like the validation
    # errors; without items, the request stands for the prescription's items in order.
    asked = [i.id for i in prescription.items] if items is None else [i.item_id for i in items]
    position = {item_id: n for n, item_id in enumerate(asked)}
    short = [p for p in plan.items if p.short > 0]
    if short and not allow_partial:
        messages = {
            f"items.{position[p.item.id]}.quantity": [
                str(
                    _l(
                        "Not enough stock of %(drug)s: %(wanted)s needed, %(available)s "
                        "available in lots that have not expired.",
                        drug=p.drug_name,
                        wanted=display_quantity(p.wanted),
                        available=display_quantity(p.available),
                    )
                )
            ]
            for p in short
        }
        raise Conflict(
            " ".join(m[0] for m in messages.values()),
            errors=messages,
            code="insufficient-stock",
        )
    takes = [(p, t) for p in plan.items for t in p.takes]
    if not takes:
        raise Conflict(
            str(_l("Nothing to hand out: no stock of the drugs owed, or no quantity given.")),
            code="insufficient-stock",
        )
    record = Dispense(
        prescription_id=prescription.id,
        facility_id=prescription.facility_id,
        kind=DispenseKind.DISPENSE,
        pharmacist_id=principal.user_id,
        note=(note or "").strip()[:500] or None,
    )
    session.add(record)
    session.flush()
    movements = []
    for item_plan, take in takes:
        taken = session.execute(
            update(StockLot)
            .where(StockLot.id == take.lot.id, StockLot.quantity >= take.quantity)
            .values(quantity=StockLot.quantity - take.quantity)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            # Another dispense took these units after our plan was made; the caller rolls
            # back, so nothing of this dispense is kept.
            message = str(
                _l(
                    "The stock of %(drug)s (lot %(lot)s) was just taken by another "
                    "dispense; nothing was handed out. Reload and try again.",
                    drug=item_plan.drug_name,
                    lot=take.lot.lot_number,
                )
            )
            raise Conflict(
                message,
                errors={f"items.{position[item_plan.item.id]}.quantity": [message]},
                code="stock-changed",
            )
        session.expire(take.lot, ["quantity"])
        line = DispenseLine(
            dispense=record, item_id=item_plan.item.id, lot_id=take.lot.id, quantity=take.quantity
        )
        session.add(line)
        movements.append(
            _movement(
                principal, take.lot, MovementKind.DISPENSE, -take.quantity, dispense_id=record.id
            )
        )
    _record_movements(session, principal, movements, prescription.patient_id)
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Dispense",
        entity_id=record.id,
        patient_id=prescription.patient_id,
        detail=f"prescription={prescription.id} lines={len(takes)}",
    )
    session.flush()
    return record


# --- returns ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnQuantity:
    item_id: int
    quantity: Decimal | None
    lot_id: int | None = None  # which lot it came from; else the last lots taken from


def _net_by_lot(session: Session, item_id: int) -> list[tuple[StockLot, Decimal]]:
    """Units of an item still out with the patient, per lot, latest taken first."""
    rows = session.execute(
        select(DispenseLine.lot_id, Dispense.kind, DispenseLine.quantity, DispenseLine.id)
        .join(Dispense, Dispense.id == DispenseLine.dispense_id)
        .where(DispenseLine.item_id == item_id)
        .order_by(DispenseLine.id)
    ).all()
    net: dict[int, Decimal] = {}
    last_taken: dict[int, int] = {}
    for lot_id, kind, amount, line_id in rows:
        sign = 1 if kind == DispenseKind.DISPENSE else -1
        net[lot_id] = net.get(lot_id, quantity(0)) + sign * quantity(amount)
        if kind == DispenseKind.DISPENSE:
            last_taken[lot_id] = line_id
    order = sorted((lot_id for lot_id in net if net[lot_id] > 0), key=lambda i: -last_taken[i])
    return [(session.get(StockLot, lot_id), net[lot_id]) for lot_id in order]


def return_units(
    session: Session,
    principal: Principal,
    prescription_id: int,
    items: list[ReturnQuantity],
    *,
    reason: str,
) -> Dispense:
    """Units the patient brought back go back into the lot they were taken from; never
    more than is still out with the patient, per item and per lot.

    One request may list an item once per lot it came from, plus once without a lot; the
    entries of an item are counted together: the named lots are served first and the
    unnamed units go to what is left, latest lots taken first. The same item twice with
    the same lot (or twice without one) is refused as a double entry rather than added up,
    since a pharmacist who typed a line twice would not notice a sum."""
    principal.require_any(*DISPENSING_ROLES)
    prescription = _visible_prescription(session, principal, prescription_id, lock=True)
    by_id = {item.id: item for item in prescription.items}
    errors: dict[str, list[str]] = {}
    if not reason or not reason.strip():
        errors["reason"] = [str(_l("Say why the units are brought back."))]
    if not items:
        errors["items"] = [str(_l("Add at least one item to return."))]
    # First the entries one by one, grouped per item with their position in the request.
    valid: dict[int, list[tuple[int, ReturnQuantity, Decimal]]] = {}
    seen: set[tuple[int, int | None]] = set()
    for n, entry in enumerate(items):
        where = f"items.{n}."
        if by_id.get(entry.item_id) is None:
            errors[where + "item_id"] = [str(_l("No item with this id on this prescription."))]
            continue
        if (entry.item_id, entry.lot_id) in seen:
            errors[where + "item_id"] = [str(_l("This item is listed twice."))]
            continue
        seen.add((entry.item_id, entry.lot_id))
        amount = entry.quantity
        if amount is None or not amount.is_finite() or amount <= 0 or amount != quantity(amount):
            errors[where + "quantity"] = [
                str(_l("The quantity must be more than zero, with at most three decimals."))
            ]
            continue
        valid.setdefault(entry.item_id, []).append((n, entry, quantity(amount)))
    # Then each item's entries together, against what is still out with the patient.
    backs: dict[int, list[tuple[StockLot, Decimal]]] = {}
    for item_id, entries in valid.items():
        item = by_id[item_id]
        out = _net_by_lot(session, item_id)
        lots = {lot.id: lot for lot, _n_out in out}
        left = {lot.id: n_out for lot, n_out in out}  # what may still come back to each lot
        for n, entry, amount in entries:
            if entry.lot_id is None:
                continue
            from_lot = left.get(entry.lot_id, quantity(0))
            if amount > from_lot:
                errors[f"items.{n}.quantity"] = [
                    str(
                        _l(
                            "%(drug)s: only %(out)s handed out from this lot; %(asked)s "
                            "cannot come back to it.",
                            drug=item.drug_name,
                            out=display_quantity(from_lot),
                            asked=display_quantity(amount),
                        )
                    )
                ]
                continue
            left[entry.lot_id] = from_lot - amount
            backs[n] = [(lots[entry.lot_id], amount)]
        for n, entry, amount in entries:
            if entry.lot_id is not None:
                continue
            unnamed_left = sum(left.values(), quantity(0))
            if amount > unnamed_left:
                total_out = sum((n_out for _lot, n_out in out), quantity(0))
                values = {"drug": item.drug_name, "out": display_quantity(total_out)}
                if len(entries) == 1:
                    message = _l(
                        "%(drug)s: only %(out)s handed out; %(asked)s cannot come back.",
                        asked=display_quantity(amount),
                        **values,
                    )
                else:
                    listed = sum((a for _n, _e, a in entries), quantity(0))
                    message = _l(
                        "%(drug)s: only %(out)s handed out; the %(asked)s listed in all on "
                        "this return cannot come back.",
                        asked=display_quantity(listed),
                        **values,
                    )
                errors[f"items.{n}.quantity"] = [str(message)]
                continue
            remaining = amount
            backs[n] = []
            for lot, _n_out in out:
                back = min(remaining, left[lot.id])
                if back > 0:
                    backs[n].append((lot, back))
                    left[lot.id] -= back
                    remaining -= back
    if errors:
        raise ValidationFailed(str(_l("The return could not be recorded.")), errors=errors)
    # One line per item and lot, even when a named and an unnamed entry both reach it.
    merged: dict[tuple[int, int], tuple[PrescriptionItem, StockLot, Decimal]] = {}
    for n in sorted(backs):
        item = by_id[items[n].item_id]
        for lot, back in backs[n]:
            before = merged.get((item.id, lot.id), (item, lot, quantity(0)))[2]
            merged[(item.id, lot.id)] = (item, lot, before + back)
    plan = list(merged.values())
    record = Dispense(
        prescription_id=prescription.id,
        facility_id=prescription.facility_id,
        kind=DispenseKind.RETURN,
        pharmacist_id=principal.user_id,
        note=reason.strip()[:500],
    )
    session.add(record)
    session.flush()
    movements = []
    for item, lot, back in plan:
        session.execute(
            update(StockLot)
            .where(StockLot.id == lot.id)
            .values(quantity=StockLot.quantity + back)
            .execution_options(synchronize_session=False)
        )
        session.expire(lot, ["quantity"])
        session.add(DispenseLine(dispense=record, item_id=item.id, lot_id=lot.id, quantity=back))
        movements.append(
            _movement(
                principal,
                lot,
                MovementKind.RETURN,
                back,
                dispense_id=record.id,
                reason=reason.strip()[:300],
            )
        )
    _record_movements(session, principal, movements, prescription.patient_id)
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Dispense",
        entity_id=record.id,
        patient_id=prescription.patient_id,
        detail=f"return prescription={prescription.id} lines={len(plan)}",
    )
    session.flush()
    return record


def dispenses_of(session: Session, principal: Principal, prescription_id: int) -> list[Dispense]:
    """Every handing-over and return of a prescription, oldest first."""
    principal.require_any(*PHARMACY_READ_ROLES)
    prescription = _visible_prescription(session, principal, prescription_id)
    audit.record_read(session, principal, "Prescription", prescription.id, prescription.patient_id)
    return list(
        session.scalars(
            select(Dispense)
            .where(Dispense.prescription_id == prescription.id)
            .options(
                selectinload(Dispense.lines).selectinload(DispenseLine.lot),
                selectinload(Dispense.lines).selectinload(DispenseLine.item),
            )
            .order_by(Dispense.at, Dispense.id)
        )
    )


# --- the pharmacy's queue -------------------------------------------------------------------


@dataclass(frozen=True)
class WaitingPrescription:
    prescription: Prescription
    owed_items: int  # items with something still owed
    started: bool  # partly dispensed already


def waiting_prescriptions(
    session: Session, principal: Principal, today: dt.date | None = None, limit: int = 200
) -> list[WaitingPrescription]:
    """Signed prescriptions still valid today with something owed, oldest signature first."""
    principal.require_any(*PHARMACY_READ_ROLES)
    today = today or local_today()
    prescriptions = list(
        session.scalars(
            select(Prescription)
            .where(
                Prescription.facility_id == principal.facility_id,
                Prescription.status == PrescriptionStatus.SIGNED,
                (Prescription.valid_until.is_(None)) | (Prescription.valid_until >= today),
            )
            .options(
                selectinload(Prescription.items),
                selectinload(Prescription.patient),
                selectinload(Prescription.prescriber),
            )
            .order_by(Prescription.signed_at, Prescription.id)
        )
    )
    dispensed = net_dispensed(session, [i.id for p in prescriptions for i in p.items])
    waiting = []
    for prescription in prescriptions:
        owed = [i for i in prescription.items if quantity(i.quantity) - dispensed[i.id] > 0]
        if not owed:
            continue
        started = any(dispensed[i.id] > 0 for i in prescription.items)
        waiting.append(WaitingPrescription(prescription, len(owed), started))
        if len(waiting) >= limit:
            break
    # Like a room's queue, a work list refreshed every few seconds is not audited as a
    # search; opening a prescription from it is audited as a read.
    return waiting


# --- the stock list -------------------------------------------------------------------------


@dataclass(frozen=True)
class LotView:
    lot: StockLot
    days_left: int  # negative once expired
    expiring_soon: bool
    expired: bool


@dataclass
class DrugStock:
    drug_code: str
    drug: Drug | None
    lots: list[LotView]  # usable, first expiry first
    expired_lots: list[LotView]

    @property
    def name(self) -> str:
        return drug_label(self.drug, self.drug_code)

    @property
    def unit(self) -> str:
        return self.drug.unit if self.drug else ""

    @property
    def available(self) -> Decimal:
        return sum((quantity(v.lot.quantity) for v in self.lots), quantity(0))

    @property
    def expiring_soon(self) -> bool:
        return any(v.expiring_soon for v in self.lots)


def stock_overview(
    session: Session,
    principal: Principal,
    *,
    expiring_within_days: int = EXPIRY_WARNING_DAYS,
    drug_code: str | None = None,
    today: dt.date | None = None,
) -> list[DrugStock]:
    """Lots in stock per drug: usable ones first expiry first (flagged when expiring within
    the threshold), expired ones apart, to be written off rather than dispensed."""
    principal.require_any(*STOCK_READ_ROLES)
    today = today or local_today()
    soon = today + dt.timedelta(days=max(expiring_within_days, 0))
    stmt = select(StockLot).where(
        StockLot.facility_id == principal.facility_id, StockLot.quantity > 0
    )
    if drug_code:
        stmt = stmt.where(StockLot.drug_code == drug_code.strip())
    lots = list(
        session.scalars(
            stmt.order_by(StockLot.drug_code, StockLot.expiry_date, StockLot.id).execution_options(
                populate_existing=True
            )
        )
    )
    drugs = _catalog_rows(session, principal.facility_id, {lot.drug_code for lot in lots}, today)
    by_code: dict[str, DrugStock] = {}
    for lot in lots:
        entry = by_code.setdefault(
            lot.drug_code, DrugStock(lot.drug_code, drugs.get(lot.drug_code), [], [])
        )
        expired = lot.expiry_date < today
        view = LotView(
            lot=lot,
            days_left=(lot.expiry_date - today).days,
            expiring_soon=not expired and lot.expiry_date <= soon,
            expired=expired,
        )
        (entry.expired_lots if expired else entry.lots).append(view)
    return sorted(by_code.values(), key=lambda s: (s.name.casefold(), s.drug_code))


def _catalog_rows(
    session: Session, facility_id: int | None, codes: set[str], today: dt.date
) -> dict[str, Drug]:
    """The catalog row of each code in force today (a lot outlives price changes), or its
    first row when none has started yet."""
    if not codes:
        return {}
    rows = session.scalars(
        select(Drug)
        .where(Drug.facility_id == facility_id, Drug.code.in_(codes))
        .order_by(Drug.code, Drug.valid_from)
    )
    found: dict[str, Drug] = {}
    for drug in rows:  # by start date: the last one started by today wins
        if drug.code not in found or drug.valid_from <= today:
            found[drug.code] = drug
    return found


def catalog_drugs(
    session: Session, principal: Principal, today: dt.date | None = None
) -> list[Drug]:
    """The facility's drugs valid today, for the receiving form's drug list."""
    principal.require_any(*RECEIVING_ROLES)
    today = today or local_today()
    return list(
        session.scalars(
            select(Drug)
            .where(
                Drug.facility_id == principal.facility_id,
                Drug.active.is_(True),
                Drug.valid_from <= today,
                (Drug.valid_to.is_(None)) | (Drug.valid_to >= today),
            )
            .order_by(Drug.active_ingredient, Drug.code)
        )
    )


# --- opening stock for the demo ---------------------------------------------------------------


def receive_opening_stock(session: Session, facility: Facility, today: dt.date) -> int:
    """Two lots of every catalog drug of a demo facility that has no stock of it yet: one
    expiring in 20–40 days (so FEFO and the expiry warning show), one in about two years.
    Booked through ``receive_stock`` like any delivery. Returns the number of lots made."""
    acting = Principal(
        user_id=None, username="demo", roles=frozenset({Role.ADMIN}), facility_id=facility.id
    )
    stocked = set(
        session.scalars(
            select(StockLot.drug_code).where(StockLot.facility_id == facility.id).distinct()
        )
    )
    drugs = [d for d in catalog_drugs(session, acting, today) if d.code not in stocked]
    if not drugs:
        return 0
    rng = random.Random(f"{facility.code}:{today.isoformat()}")  # noqa: S311 (demo data)
    lines = []
    for drug in sorted(drugs, key=lambda d: d.code):
        near = today + dt.timedelta(days=rng.randint(20, 40))
        far = today + dt.timedelta(days=rng.randint(540, 900))
        cost = drug.price * 3 // 4
        for expiry, amount, letter in ((near, 30, "A"), (far, 300, "B")):
            lines.append(
                ReceiptLine(
                    drug_code=drug.code,
                    lot_number=f"{letter}{expiry:%y%m}{rng.randrange(10**4):04d}",
                    expiry_date=expiry,
                    quantity=Decimal(amount),
                    unit_cost=cost,
                )
            )
    created = 0
    for start in range(0, len(lines), MAX_RECEIPT_LINES):
        received = receive_stock(
            session,
            acting,
            ReceiptRequest(
                lines=lines[start : start + MAX_RECEIPT_LINES],
                supplier="Công ty Dược phẩm An Giang (demo)",
                invoice_number=f"DEMO-{facility.code}",
                note="Opening stock",
            ),
            today,
        )
        created += sum(1 for line in received.lines if line.created)
    return created


def parse_quantity(text: str | None) -> Decimal | None:
    """A quantity typed in a form (a comma as the decimal mark too); None if unreadable."""
    if text is None or not text.strip():
        return None
    try:
        return Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return None
