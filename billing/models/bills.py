"""What a visit costs (charges), the bills that group them, and the payments on those bills.

A charge keeps the catalog prices of its day, so a later price change never re-prices it.
A bill is open until paid; a paid bill is locked (its figures are kept as they were paid),
and a charge that arrives after that goes on a new, supplementary bill of the same visit.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base, utcnow
from his.models.types import created_at, str_enum


class ChargeKind(enum.StrEnum):
    EXAMINATION = "examination"
    SERVICE = "service"  # a technical service done (lab, imaging, procedure)
    DRUG = "drug"
    SUPPLY = "supply"  # a medical supply (VTYT)


class BillStatus(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"  # locked: a later charge opens a supplementary bill
    REFUNDED = "refunded"


class Bill(Base):
    __tablename__ = "bill"
    __table_args__ = (UniqueConstraint("visit_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    number: Mapped[int] = mapped_column(default=1)  # 1: the visit's bill; 2+: supplementary
    status: Mapped[BillStatus] = mapped_column(
        str_enum(BillStatus, "bill_status"), default=BillStatus.OPEN, index=True
    )
    # The figures as paid, kept when the bill is locked (an open bill is computed live).
    total: Mapped[int | None]
    insurance_pays: Mapped[int | None]
    patient_copay: Mapped[int | None]
    patient_out_of_scope: Mapped[int | None]
    patient_pays: Mapped[int | None]
    coverage_rule: Mapped[str | None] = mapped_column(String(40))
    coverage_rate: Mapped[int | None]
    lines: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[created_at]
    paid_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy's API)

    charges: Mapped[list[Charge]] = relationship(back_populates="bill", order_by="Charge.id")
    payments: Mapped[list[Payment]] = relationship(back_populates="bill", order_by="Payment.id")


class Charge(Base):
    __tablename__ = "charge"
    __table_args__ = (
        CheckConstraint("unit_price >= 0 AND bhyt_price >= 0", name="prices"),
        CheckConstraint(
            "service_rate BETWEEN 0 AND 100 AND payment_rate BETWEEN 0 AND 100", name="rates"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bill.id"), index=True)
    kind: Mapped[ChargeKind] = mapped_column(str_enum(ChargeKind, "charge_kind"))
    # What the charge came from ("encounter:12", "service_order:5", "dispense_line:9"), so
    # accruing twice never charges twice; none for a charge entered by hand.
    source_key: Mapped[str | None] = mapped_column(String(60), unique=True)
    code: Mapped[str] = mapped_column(String(50))  # catalog code (MA_DICH_VU / MA_THUOC)
    name: Mapped[str] = mapped_column(String(500))
    unit: Mapped[str | None] = mapped_column(String(30))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))  # negative: units returned
    unit_price: Mapped[int]  # VND the facility charges (DON_GIA_BV)
    bhyt_price: Mapped[int]  # VND the fund's price (DON_GIA_BH)
    in_scope: Mapped[bool]  # in the BHYT list (PHAM_VI 1)
    service_rate: Mapped[int] = mapped_column(default=100)  # TYLE_TT_DV
    payment_rate: Mapped[int] = mapped_column(default=100)  # TYLE_TT_BH
    service_date: Mapped[dt.date]
    performed_at: Mapped[dt.datetime]
    department_code: Mapped[str | None] = mapped_column(String(20))
    doctor_licence: Mapped[str | None] = mapped_column(String(30))  # MA_BAC_SI
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[created_at]
    cancelled_at: Mapped[dt.datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(300))

    bill: Mapped[Bill] = relationship(back_populates="charges")


class PaymentKind(enum.StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class PaymentMethod(enum.StrEnum):
    CASH = "cash"
    CARD = "card"
    TRANSFER = "transfer"  # a bank transfer, the VietQR code's included


class Payment(Base):
    """Money taken or given back at the cashier; each has its receipt number."""

    __tablename__ = "payment"
    __table_args__ = (
        UniqueConstraint("facility_id", "receipt_number"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bill.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    kind: Mapped[PaymentKind] = mapped_column(str_enum(PaymentKind, "payment_kind"))
    method: Mapped[PaymentMethod] = mapped_column(str_enum(PaymentMethod, "payment_method"))
    amount: Mapped[int]  # VND, always positive; the kind says which way
    # Sequential per facility and year: 2026-000123.
    receipt_number: Mapped[str] = mapped_column(String(20))
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(String(300))  # a refund's reason
    refund_of_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    # The bank's transaction id of a payment notification: a repeat is recognised by it.
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    notification: Mapped[dict | None] = mapped_column(JSON)

    bill: Mapped[Bill] = relationship(back_populates="payments")
