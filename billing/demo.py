"""The demo province's billing set-up: a bank account per facility for VietQR transfers.

Loaded by ``his demo`` beside the clinical demo data (``his.services.demo`` knows nothing
of billing). The accounts are made up: a demo QR code scans, but pays nobody real.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import FacilityBankAccount
from his.models import Facility

# A real bank's NAPAS BIN (VietinBank), so banking apps read the code; the accounts are not.
DEMO_BANK_BIN = "970415"


def load_billing_demo(session: Session) -> int:
    """Adds the accounts missing; returns how many were added."""
    have = set(session.scalars(select(FacilityBankAccount.facility_id)))
    added = 0
    for facility in session.scalars(select(Facility).order_by(Facility.id)):
        if facility.id in have:
            continue
        session.add(
            FacilityBankAccount(
                facility_id=facility.id,
                bank_bin=DEMO_BANK_BIN,
                account_number=f"1133{facility.code}00",
                account_name=facility.name[:100],
            )
        )
        added += 1
    session.flush()
    return added
