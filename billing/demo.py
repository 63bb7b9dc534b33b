"""The demo province's billing set-up: a bank account per facility for VietQR transfers,
the claim settings and a self-signed test certificate for its claim files.

Loaded by ``his demo`` beside the clinical demo data (``his.services.demo`` knows nothing
of billing). All made up: a demo QR code scans but pays nobody real, and the gateway would
refuse a claim signed with the test certificate.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.claim_files import make_demo_keys
from billing.models import FacilityBankAccount, FacilityClaimSettings
from his.models import Facility

# A real bank's NAPAS BIN (VietinBank), so banking apps read the code; the accounts are not.
DEMO_BANK_BIN = "970415"


def load_billing_demo(session: Session, keys_dir: Path | None = None) -> int:
    """Adds what is missing for each facility; returns how many facilities got something."""
    banked = set(session.scalars(select(FacilityBankAccount.facility_id)))
    settled = set(session.scalars(select(FacilityClaimSettings.facility_id)))
    touched = 0
    for n, facility in enumerate(session.scalars(select(Facility).order_by(Facility.id)), 1):
        added = False
        if facility.id not in banked:
            session.add(
                FacilityBankAccount(
                    facility_id=facility.id,
                    bank_bin=DEMO_BANK_BIN,
                    account_number=f"1133{facility.code}00",
                    account_name=facility.name[:100],
                )
            )
            added = True
        if facility.id not in settled:
            # A made-up social-insurance number of the facility's head (MA_TTDV).
            session.add(
                FacilityClaimSettings(
                    facility_id=facility.id,
                    head_insurance_number=f"{facility.province_code}{n:08d}",
                )
            )
            added = True
        if keys_dir is not None:
            added = make_demo_keys(keys_dir, facility) or added
        touched += added
    session.flush()
    return touched
