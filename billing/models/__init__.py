"""Billing tables: dated billing parameters, charges, bills and payments, claim files.

Kept in the ``billing`` package (not ``his.models``) because billing depends on the clinical
models and never the other way round; ``migrations/env.py`` imports this package so the
tables are on the same metadata.
"""

from billing.models.accounts import FacilityBankAccount, FacilityClaimSettings
from billing.models.bills import (
    Bill,
    BillStatus,
    Charge,
    ChargeKind,
    Payment,
    PaymentKind,
    PaymentMethod,
)
from billing.models.claims import ClaimFile, ClaimStatus
from billing.models.params import BillingParam

__all__ = [
    "Bill",
    "BillStatus",
    "BillingParam",
    "Charge",
    "ChargeKind",
    "ClaimFile",
    "ClaimStatus",
    "FacilityBankAccount",
    "FacilityClaimSettings",
    "Payment",
    "PaymentKind",
    "PaymentMethod",
]
