"""Claim: one per BHYT visit, read from the visit's latest signed claim file, so the FHIR
Claim says exactly what the file sent to the gateway says (items, diagnoses, totals).

The file is the source: its tables are decoded back (the signature was checked when it was
made), never recomputed from today's catalog or rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from billing.claim_files import CHECK_IN
from billing.claims import read_envelope, read_table
from billing.models import ClaimFile
from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, date_time, drop_empty, ref
from his.fhirapi.mappers.encounter import row_id
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import DATE, REFERENCE, TOKEN, param
from his.models import Coverage, Visit

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
CLAIM_FILE = f"{systems.OURS}/sid/claim-file"  # MA_LK/v<version>
INPATIENT_KINDS = ("03", "04")  # MA_LOAI_KCB of treatment episodes (claim_files.VISIT_KIND)

param("Claim", "patient", REFERENCE, "patient", targets=("Patient",))
param("Claim", "identifier", TOKEN, "identifier", doc="MA_LK, the visit code of the claim files")
param("Claim", "status", TOKEN, "status")
param("Claim", "use", TOKEN, "use")
param("Claim", "created", DATE, "created")
param("Claim", "provider", REFERENCE, "provider", targets=("Organization",))


@trigger(ClaimFile)
def _claim_file_changed(row: ClaimFile):
    # Only a new file changes the Claim: the sender's attempts, leases and answers do not.
    if row.tables == CHECK_IN or not inspect(row).attrs.content.history.has_changes():
        return []
    return [("Claim", str(row.visit_id))]


def _ids(session: Session) -> Iterator[str]:
    for visit_id in session.scalars(
        select(ClaimFile.visit_id)
        .where(ClaimFile.tables != CHECK_IN)
        .distinct()
        .order_by(ClaimFile.visit_id)
    ):
        yield str(visit_id)


ALL_IDS["Claim"] = _ids


def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _money(text: str) -> dict[str, Any]:
    return {"value": _number(text), "currency": "VND"}


@builder("Claim")
def build_claim(session: Session, resource_id: str) -> Built | None:
    visit_id = row_id(resource_id)
    if visit_id is None:
        return None
    latest = session.scalar(
        select(ClaimFile)
        .where(ClaimFile.visit_id == visit_id, ClaimFile.tables != CHECK_IN)
        .order_by(ClaimFile.version.desc())
        .limit(1)
    )
    visit = session.get(Visit, visit_id)
    if latest is None or visit is None:
        return None
    return Built(claim_resource(session, latest, visit), visit.patient_id, visit.facility_id)


def claim_resource(session: Session, claim: ClaimFile, visit: Visit) -> dict[str, Any]:
    tables = read_envelope(claim.content)
    [summary] = read_table("XML1", tables["XML1"])
    lines = [
        (row, systems.DRUG_CODE, row["MA_THUOC"], row["TEN_THUOC"], row["DON_GIA"])
        for row in (read_table("XML2", tables["XML2"]) if "XML2" in tables else [])
    ] + [
        (
            row,
            systems.SERVICE_CODE,
            row["MA_DICH_VU"] or row["MA_VAT_TU"],
            row["TEN_DICH_VU"] or row["TEN_VAT_TU"],
            row["DON_GIA_BV"],
        )
        for row in (read_table("XML3", tables["XML3"]) if "XML3" in tables else [])
    ]
    coverage_id = session.scalar(
        select(func.max(Coverage.id)).where(Coverage.patient_id == visit.patient_id)
    )
    diagnoses = [summary["MA_BENH_CHINH"], *filter(None, summary["MA_BENH_KT"].split(";"))]
    resource = {
        "identifier": [
            {"system": systems.MA_LK, "value": claim.ma_lk},
            # Which signed file this Claim shows: a corrected claim is a new file version.
            {"system": CLAIM_FILE, "value": f"{claim.ma_lk}/v{claim.version}"},
        ],
        "status": "active",
        "type": concept(
            CLAIM_TYPE,
            "institutional" if summary["MA_LOAI_KCB"] in INPATIENT_KINDS else "professional",
        ),
        "use": "claim",
        "patient": ref("Patient", visit.patient_id),
        "billablePeriod": {
            "start": date_time(visit.opened_at),
            "end": date_time(visit.closed_at),
        },
        "created": date_time(claim.created_at),
        "provider": ref("Organization", visit.facility_id),
        "priority": concept(PROCESS_PRIORITY, "normal"),
        "diagnosis": [
            {
                "sequence": n,
                "diagnosisCodeableConcept": concept(systems.ICD10_VN, code),
            }
            for n, code in enumerate(diagnoses, 1)
        ],
        "insurance": [
            {
                "sequence": 1,
                "focal": True,
                "identifier": {
                    "system": systems.BHYT,
                    "value": summary["MA_THE_BHYT"].split(";")[0],
                },
                "coverage": ref("Coverage", coverage_id)
                if coverage_id
                else {"display": summary["MA_THE_BHYT"]},
            }
        ],
        "item": [
            {
                "sequence": n,
                "productOrService": {"coding": [coding(system, code, name)], "text": name},
                "quantity": {"value": _number(row["SO_LUONG"])},
                "unitPrice": _money(price),
                "net": _money(row["THANH_TIEN_BV"]),
            }
            for n, (row, system, code, name, price) in enumerate(lines, 1)
        ],
        "total": _money(summary["T_TONGCHI_BV"]),
    }
    return drop_empty(resource)
