"""Drug stock per facility by lot, what came in, and what went out to whom.

A lot's quantity never goes below zero: the database refuses it (CHECK), and dispensing
decrements with a guarded UPDATE, so two pharmacists taking the last units at the same
moment cannot both succeed. Every change of a lot's quantity is a ``stock_movement`` row.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base, utcnow
from his.models.prescription import Prescription, PrescriptionItem
from his.models.types import str_enum


class StockLot(Base):
    __tablename__ = "stock_lot"
    __table_args__ = (
        UniqueConstraint("facility_id", "drug_code", "lot_number", "expiry_date"),
        CheckConstraint("quantity >= 0", name="not_negative"),
        CheckConstraint("unit_cost >= 0", name="unit_cost"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    # By code, not by catalog row: a price change (a new catalog row) keeps the same stock.
    drug_code: Mapped[str] = mapped_column(String(50), index=True)
    lot_number: Mapped[str] = mapped_column(String(50))
    expiry_date: Mapped[dt.date]
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit_cost: Mapped[int]  # VND per unit
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StockReceipt(Base):
    """Goods received (phiếu nhập): one delivery, several lots."""

    __tablename__ = "stock_receipt"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    supplier: Mapped[str | None] = mapped_column(String(200))
    invoice_number: Mapped[str | None] = mapped_column(String(50))
    note: Mapped[str | None] = mapped_column(String(500))
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DispenseKind(enum.StrEnum):
    DISPENSE = "dispense"
    RETURN = "return"  # the patient brought units back


class Dispense(Base):
    """One handing-over (or return) at the pharmacy counter for one prescription."""

    __tablename__ = "dispense"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescription.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    kind: Mapped[DispenseKind] = mapped_column(
        str_enum(DispenseKind, "dispense_kind"), default=DispenseKind.DISPENSE
    )
    pharmacist_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(String(500))

    prescription: Mapped[Prescription] = relationship()
    lines: Mapped[list[DispenseLine]] = relationship(
        back_populates="dispense", order_by="DispenseLine.id"
    )


class DispenseLine(Base):
    __tablename__ = "dispense_line"
    __table_args__ = (CheckConstraint("quantity > 0", name="positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dispense_id: Mapped[int] = mapped_column(ForeignKey("dispense.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("prescription_item.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("stock_lot.id"))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))  # always positive; kind says

    dispense: Mapped[Dispense] = relationship(back_populates="lines")
    item: Mapped[PrescriptionItem] = relationship()
    lot: Mapped[StockLot] = relationship()


class MovementKind(enum.StrEnum):
    RECEIPT = "receipt"
    DISPENSE = "dispense"
    RETURN = "return"
    ADJUSTMENT = "adjustment"  # stock count, breakage, expiry write-off


class StockMovement(Base):
    """Every change of a lot's quantity, signed: + in, − out."""

    __tablename__ = "stock_movement"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("stock_lot.id"), index=True)
    kind: Mapped[MovementKind] = mapped_column(str_enum(MovementKind, "movement_kind"))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    receipt_id: Mapped[int | None] = mapped_column(ForeignKey("stock_receipt.id"))
    dispense_id: Mapped[int | None] = mapped_column(ForeignKey("dispense.id"))
    reason: Mapped[str | None] = mapped_column(String(300))
    by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    lot: Mapped[StockLot] = relationship()
