"""A finished BHYT visit's claim file: its records mapped to the claim tables, checked,
validated, wrapped in the GIAMDINHHS envelope, signed with the facility's certificate and
kept as a new version of the visit's claim.

The money comes from the same bill the cashier sees (``billing.bills``): the claim and the
bill never disagree. Codes whose lists this deployment does not hold yet are mapped in one
place below, each marked [verify] where the public sources were thin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import bills
from billing.claims import (
    SCHEMA_VERSION,
    BirthDate,
    CheckIn,
    Claim,
    ClaimError,
    CourseEntry,
    DrugLine,
    ResultLine,
    ServiceLine,
    Summary,
    build_check_in,
    build_envelope,
    make_test_certificate,
    sign_envelope,
    tables_for,
)
from billing.copay import LineSplit
from billing.models import Charge, ChargeKind, ClaimFile, ClaimStatus, FacilityClaimSettings
from his.db import utcnow
from his.errors import Conflict, ValidationFailed
from his.localtime import local_date
from his.models import (
    Department,
    DispenseLine,
    Encounter,
    Facility,
    IdentifierType,
    ObservationResult,
    Payment,
    Role,
    ServiceKind,
    ServiceOrder,
    User,
    Visit,
    VisitStatus,
    VisitType,
    VitalSigns,
)
from his.models.encounter import Disposition
from his.models.patient import Sex
from his.services import audit
from his.services.access import Principal
from his.services.visits import get_visit

CLAIM_ROLES = (Role.ADMIN, Role.CASHIER)

# --- code lists held here until they are loaded as data --------------------------------------

# MA_DOITUONG_KCB by the rule that decided the coverage. [verify] against the QĐ 3276/QĐ-BYT
# list (27 rows): only the families are certain (1.x right route, 2 emergency, 3.x
# self-referral); the sub-codes are this deployment's reading.
VISIT_CLASS = {
    "registered_facility": "1.1",
    "referred": "1.3",
    "primary_level": "1.7",
    "emergency": "2",
    "self_referral_inpatient": "3.2",
    "self_referral_inpatient_central": "3.1",
    "self_referral_outpatient": "3.3",
    "self_referral_outpatient_basic": "3.4",
    "self_referral_outpatient_central": "3.1",
}
# MA_LOAI_KCB by visit type. [verify] 01 outpatient examination, 03 inpatient, 04 day care.
VISIT_KIND = {
    VisitType.OUTPATIENT: "01",
    VisitType.EMERGENCY: "01",
    VisitType.OBSERVATION: "01",
    VisitType.INPATIENT: "03",
    VisitType.DAY: "04",
}
# MA_NHOM (cost group). [verify] 1 lab, 2 imaging, 3 functional tests, 4 drugs in the list,
# 6 drugs paid at a rate, 8 surgery, 10 supplies in the list, 13 examination, 18 procedures.
COST_GROUP = {
    ServiceKind.LAB: "1",
    ServiceKind.IMAGING: "2",
    ServiceKind.OTHER: "3",
    ServiceKind.PROCEDURE: "18",
    ServiceKind.EXAMINATION: "13",
}
DRUG_GROUP, DRUG_AT_A_RATE_GROUP, SUPPLY_GROUP = "4", "6", "10"
SEX = {Sex.MALE: 1, Sex.FEMALE: 2, Sex.UNDETERMINED: 3}
# MA_QUOCTICH: Circular 07/2016/TT-BCA Appendix 2 numbers countries; [verify] Việt Nam = 000.
NATIONALITY = {"VN": "000"}
NO_OCCUPATION = "00000"
# KET_QUA_DTRI 1 cured … 5 died, 7 not determined (an outpatient examination); MA_LOAI_RV
# 1 discharged, 2 referred on. [verify] the outpatient convention.
OUTCOME_DIED, OUTCOME_NOT_DETERMINED = 5, 7
LEAVE_DISCHARGED, LEAVE_REFERRED = 1, 2


# --- signing keys ----------------------------------------------------------------------------


def keys_dir() -> Path:
    from his.config import Settings

    if has_app_context():
        return current_app.config["HIS_SETTINGS"].claim_keys_dir
    return Settings.from_env().claim_keys_dir


def key_paths(folder: Path, facility_code: str) -> tuple[Path, Path]:
    return folder / f"{facility_code}.key.pem", folder / f"{facility_code}.cert.pem"


def load_keys(folder: Path, facility_code: str) -> tuple[bytes, bytes]:
    key, cert = key_paths(folder, facility_code)
    if not key.is_file() or not cert.is_file():
        raise ValidationFailed(
            str(
                _l(
                    "No signing certificate for facility %(code)s: put %(key)s and %(cert)s in "
                    "place (the certificate registered on the gateway).",
                    code=facility_code,
                    key=key.name,
                    cert=cert.name,
                )
            ),
            errors={"certificate": [str(folder)]},
        )
    return key.read_bytes(), cert.read_bytes()


def make_demo_keys(folder: Path, facility: Facility) -> bool:
    """A self-signed test certificate for a demo facility that has none (False: it had one)."""
    key, cert = key_paths(folder, facility.code)
    if key.exists() and cert.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem, cert_pem = make_test_certificate(facility.code, facility.name)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return True


# --- the claim of a visit --------------------------------------------------------------------


@dataclass
class _Lines:
    drugs: list[DrugLine]
    services: list[ServiceLine]


def _percent(value: int) -> Decimal:
    return Decimal(value)


def _department_code(session: Session, visit: Visit) -> str:
    department_id = visit.department_id or (visit.room.department_id if visit.room else None)
    code = session.scalar(select(Department.code).where(Department.id == department_id))
    return code or "K01"


def _licence(user: User | None) -> str | None:
    return user.practising_certificate if user is not None else None


def _lines(
    session: Session, visit: Visit, bill: bills.VisitBill, department: str, doctor: str | None
) -> _Lines:
    splits: dict[str, LineSplit] = {line.key: line for line in bill.split.lines}
    charges = bills.live_charges(session, visit)
    drugs, services = [], []
    for charge in charges:
        split = splits[str(charge.id)]
        covered = split.bhyt_amount > 0
        # A charge entered by hand (a supply) names no doctor: the visit's doctor ordered it.
        doctors = tuple(x for x in (charge.doctor_licence or doctor,) if x) or ("",)
        common = {
            "ma_lk": visit.visit_code,
            "pham_vi": 1 if charge.in_scope else 2,
            "so_luong": charge.quantity,
            "thanh_tien_bv": Decimal(split.total),
            "thanh_tien_bh": Decimal(split.bhyt_amount),
            "muc_huong": _percent(split.coverage_rate),
            "t_bntt": Decimal(split.patient_out_of_scope),
            "t_bncct": Decimal(split.patient_copay),
            "t_bhtt": Decimal(split.insurance_pays),
            "ma_khoa": charge.department_code or department,
            "ma_bac_si": doctors,
            "ngay_yl": charge.performed_at,
        }
        if charge.kind == ChargeKind.DRUG:
            drug = _drug_of(session, charge)
            drugs.append(
                DrugLine(
                    ma_thuoc=(drug.national_code if drug and drug.national_code else charge.code),
                    ma_nhom=DRUG_GROUP if charge.payment_rate == 100 else DRUG_AT_A_RATE_GROUP,
                    ten_thuoc=charge.name,
                    don_vi_tinh=charge.unit or "",
                    ham_luong=drug.strength if drug else None,
                    # DUONG_DUNG is a code of the route list (4 characters), which the
                    # catalog does not hold yet: the route's words would be refused. [verify]
                    duong_dung=None,
                    dang_bao_che=drug.dosage_form if drug else None,
                    so_dang_ky=drug.registration_number if drug else None,
                    tyle_tt_bh=_percent(charge.payment_rate if covered else 0),
                    don_gia=Decimal(charge.unit_price),
                    **common,
                )
            )
            continue
        kind = _service_kind(session, charge)
        group = SUPPLY_GROUP if charge.kind == ChargeKind.SUPPLY else COST_GROUP[kind]
        services.append(
            ServiceLine(
                ma_dich_vu=None if charge.kind == ChargeKind.SUPPLY else charge.code,
                # A supply's catalog code is the one the gateway gave it (MA_VAT_TU).
                ma_vat_tu=charge.code if charge.kind == ChargeKind.SUPPLY else None,
                ma_nhom=group,
                ten_dich_vu=None if charge.kind == ChargeKind.SUPPLY else charge.name,
                ten_vat_tu=charge.name if charge.kind == ChargeKind.SUPPLY else None,
                don_vi_tinh=charge.unit or "lần",
                don_gia_bv=Decimal(charge.unit_price),
                # The fund's price of what it covers; an uncovered line is insured for nothing.
                don_gia_bh=Decimal(charge.bhyt_price),
                tyle_tt_dv=_percent(charge.service_rate),
                tyle_tt_bh=_percent(charge.payment_rate if covered else 0),
                **common,
            )
        )
    return _Lines(drugs, services)


def _drug_of(session: Session, charge: Charge):
    if not (charge.source_key or "").startswith("dispense_line:"):
        return None
    line = session.get(DispenseLine, int(charge.source_key.split(":", 1)[1]))
    return line.item.drug if line else None


def _service_kind(session: Session, charge: Charge) -> ServiceKind:
    if charge.kind == ChargeKind.EXAMINATION:
        return ServiceKind.EXAMINATION
    if (charge.source_key or "").startswith("service_order:"):
        order = session.get(ServiceOrder, int(charge.source_key.split(":", 1)[1]))
        if order is not None:
            return order.service.kind
    return ServiceKind.OTHER


def _results(session: Session, visit: Visit) -> list[ResultLine]:
    rows = session.execute(
        select(ObservationResult, ServiceOrder)
        .join(ServiceOrder, ObservationResult.order_id == ServiceOrder.id)
        .join(Encounter, ServiceOrder.encounter_id == Encounter.id)
        .where(Encounter.visit_id == visit.id, ServiceOrder.status != "cancelled")
        .order_by(ObservationResult.id)
    ).all()
    superseded = {r.supersedes_id for r, _o in rows if r.supersedes_id}
    results = []
    for result, order in rows:
        if result.id in superseded:
            continue  # a corrected result replaces it
        reader = session.get(User, result.resulted_by_id) if result.resulted_by_id else None
        results.append(
            ResultLine(
                ma_lk=visit.visit_code,
                ma_dich_vu=order.service_code,
                ma_chi_so=result.code,
                ten_chi_so=result.name,
                gia_tri=result.value,
                don_vi_do=result.unit,
                ket_luan=result.conclusion,
                ngay_kq=result.resulted_at,
                ma_bs_doc_kq=tuple(x for x in (_licence(reader),) if x),
            )
        )
    return results


def _card_code(coverage) -> str:
    """The 15-character card code the claim needs; a 10-digit number checked on the gateway
    is completed from the group, level and province it returned."""
    if len(coverage.card_number) == 15:
        return coverage.card_number
    if coverage.group_code and coverage.benefit_level and coverage.issuing_province:
        return (
            f"{coverage.group_code}{coverage.benefit_level}"
            f"{coverage.issuing_province}{coverage.insurance_number}"
        )
    raise ValidationFailed(
        str(_l("The card's 15-character code is not known: check the card on the gateway.")),
        errors={"coverage": [coverage.card_number]},
    )


def claim_for_visit(session: Session, visit: Visit, bill: bills.VisitBill) -> Claim:
    """The claim tables of a finished BHYT visit."""
    patient, facility = visit.patient, visit.facility
    coverage = patient.coverage
    encounters = session.scalars(
        select(Encounter).where(Encounter.visit_id == visit.id).order_by(Encounter.started_at)
    ).all()
    if not encounters:
        raise ValidationFailed(str(_l("The visit has no examination to claim.")))
    diagnoses = [d for e in encounters for d in e.diagnoses]
    main = next((d for d in diagnoses if d.is_main), diagnoses[0] if diagnoses else None)
    if main is None:
        raise ValidationFailed(
            str(_l("The visit has no diagnosis: the claim needs the main ICD-10 code.")),
            errors={"diagnosis": [str(_l("required"))]},
        )
    others = tuple(dict.fromkeys(d.icd10_code for d in diagnoses if d is not main))
    last = encounters[-1]
    department = _department_code(session, visit)
    lines = _lines(session, visit, bill, department, _licence(last.doctor))
    figures = bill.figures
    started = visit.opened_at
    ended = visit.closed_at or last.finished_at or utcnow()
    inpatient = visit.visit_type in bills.INPATIENT_TYPES
    weight = session.scalar(
        select(VitalSigns.weight)
        .join(Encounter, VitalSigns.encounter_id == Encounter.id)
        .where(Encounter.visit_id == visit.id, VitalSigns.weight.is_not(None))
        .order_by(VitalSigns.recorded_at.desc())
        .limit(1)
    )
    drugs_total = sum((line.thanh_tien_bv for line in lines.drugs), Decimal(0))
    supplies_total = sum(
        (line.thanh_tien_bv for line in lines.services if line.is_supply), Decimal(0)
    )
    visit_class = VISIT_CLASS.get(bill.split.coverage_rule, "1.1")
    paid_at = _paid_at(bill)
    summary = Summary(
        **_identity(visit),
        ma_quoctich=NATIONALITY.get(patient.nationality, patient.nationality),
        ma_dantoc=patient.ethnicity_code or "01",
        ma_nghe_nghiep=patient.occupation_code or NO_OCCUPATION,
        dia_chi=patient.address_line or "",
        matinh_cu_tru=patient.province_code,
        mahuyen_cu_tru=patient.legacy_district_code,
        maxa_cu_tru=patient.commune_code,
        dien_thoai=patient.phone,
        ly_do_vv=encounters[0].reason,
        chan_doan_vao=visit.referral_diagnosis,
        chan_doan_rv="; ".join(d.title for d in [main, *(d for d in diagnoses if d is not main)]),
        ma_benh_chinh=main.icd10_code,
        ma_benh_kt=others,
        ma_doituong_kcb=visit_class,
        ma_noi_di=visit.referral_from_facility_code,
        ma_noi_den=last.refer_to_facility_code,
        ngay_vao=started,
        ngay_vao_noi_tru=started if inpatient else None,
        ngay_ra=ended,
        giay_chuyen_tuyen=visit.referral_letter_number,
        so_ngay_dtri=(local_date(ended) - local_date(started)).days + 1 if inpatient else 0,
        ket_qua_dtri=OUTCOME_DIED
        if last.disposition == Disposition.DIED
        else OUTCOME_NOT_DETERMINED,
        ma_loai_rv=LEAVE_REFERRED
        if last.disposition == Disposition.REFER_OUT
        else LEAVE_DISCHARGED,
        ngay_ttoan=paid_at,
        t_thuoc=drugs_total,
        t_vtyt=supplies_total,
        t_tongchi_bv=Decimal(figures.total),
        t_tongchi_bh=sum(
            (line.thanh_tien_bh for line in (*lines.drugs, *lines.services)), Decimal(0)
        ),
        t_bntt=Decimal(figures.patient_out_of_scope),
        t_bncct=Decimal(figures.patient_copay),
        t_bhtt=Decimal(figures.insurance_pays),
        nam_qt=local_date(paid_at or ended).year,
        thang_qt=local_date(paid_at or ended).month,
        ma_loai_kcb=VISIT_KIND[visit.visit_type],
        ma_khoa=(department,),
        ma_cskcb=facility.code,
        ma_khuvuc=coverage.area_code,
        can_nang=weight,
        nam_nam_lien_tuc=coverage.five_year_date,
        ngay_tai_kham=(last.follow_up_date,) if last.follow_up_date else (),
        ma_hsba=visit.visit_code,
        ma_ttdv=_head_number(session, facility),
    )
    try:
        check_in = check_in_for_visit(session, visit, bill)
    except Conflict:
        check_in = None  # nothing charged: no check-in to go with the claim
    course = (
        [
            CourseEntry(
                ma_lk=visit.visit_code,
                dien_bien_ls=e.findings or e.conclusion or e.reason or "",
                thoi_diem_dbls=e.started_at,
                nguoi_thuc_hien=tuple(x for x in (_licence(e.doctor),) if x) or ("",),
            )
            for e in encounters
        ]
        if inpatient
        else []
    )
    return Claim(
        check_in=check_in,
        summary=summary,
        drugs=tuple(lines.drugs),
        services=tuple(lines.services),
        results=tuple(_results(session, visit)),
        course=tuple(course),
    )


def _identity(visit: Visit) -> dict:
    """Who the claim is for and on which card: the same in XML0 and XML1."""
    patient = visit.patient
    coverage = patient.coverage
    return {
        "ma_lk": visit.visit_code,
        "ma_bn": patient.mrn,
        "ho_ten": patient.full_name,
        "so_cccd": patient.identifier(IdentifierType.CCCD),
        "ngay_sinh": BirthDate.of(patient.birth),
        "gioi_tinh": SEX[patient.sex],
        "ma_the_bhyt": (_card_code(coverage),),
        "ma_dkbd": (coverage.registered_facility_code or "",),
        "gt_the_tu": (coverage.valid_from,) if coverage.valid_from else (),
        "gt_the_den": (coverage.valid_to,) if coverage.valid_to else (),
    }


def check_in_for_visit(
    session: Session, visit: Visit, bill: bills.VisitBill | None = None
) -> CheckIn:
    """XML0: the visit's status at its first charge (no diagnosis is needed yet); ``bill``
    when the caller has just built it."""
    facility = visit.facility
    bill = bill or bills.build(session, visit)
    first = min(bills.live_charges(session, visit), key=lambda c: c.performed_at, default=None)
    if first is None:
        raise Conflict(str(_l("Nothing is charged yet: the check-in comes with the first charge.")))
    drug = first.kind == ChargeKind.DRUG
    inpatient = visit.visit_type in bills.INPATIENT_TYPES
    return CheckIn(
        **_identity(visit),
        ma_doituong_kcb=VISIT_CLASS.get(bill.split.coverage_rule, "1.1"),
        ngay_vao=visit.opened_at,
        ngay_vao_noi_tru=visit.opened_at if inpatient else None,
        ma_loai_kcb=VISIT_KIND[visit.visit_type],
        ma_cskcb=facility.code,
        ma_dich_vu=None if drug else first.code,
        ten_dich_vu=None if drug else first.name,
        ma_thuoc=first.code if drug else None,
        ten_thuoc=first.name if drug else None,
        ngay_yl=first.performed_at,
    )


def _paid_at(bill: bills.VisitBill) -> dt.datetime | None:
    """NGAY_TTOAN: when the patient finished paying (empty until then)."""
    if bill.open_bill is not None and bill.open_bill.figures.patient_pays > 0:
        return None
    paid = [view.bill.paid_at for view in bill.bills if view.bill.paid_at is not None]
    return max(paid) if paid else None


def _head_number(session: Session, facility: Facility) -> str:
    settings = session.scalar(
        select(FacilityClaimSettings).where(FacilityClaimSettings.facility_id == facility.id)
    )
    if settings is None:
        raise ValidationFailed(
            str(
                _l(
                    "Facility %(code)s has no claim settings: the social-insurance number of "
                    "its head (MA_TTDV) is needed.",
                    code=facility.code,
                )
            ),
            errors={"ma_ttdv": [str(_l("required"))]},
        )
    return settings.head_insurance_number


def make_claim_file(
    session: Session, principal: Principal, visit_id: int, folder: Path | None = None
) -> ClaimFile:
    """Builds, checks, validates and signs the claim of a finished BHYT visit as a new version
    (same MA_LK); earlier versions not yet accepted are superseded."""
    principal.require_any(*CLAIM_ROLES)
    visit = get_visit(session, principal, visit_id)
    if visit.payment != Payment.BHYT:
        raise Conflict(str(_l("Only a BHYT visit has a claim.")), errors={"visit_id": ["fee"]})
    if visit.status != VisitStatus.FINISHED:
        raise Conflict(
            str(_l("The visit is not finished: its claim is made when it ends.")),
            errors={"visit_id": [visit.status.value]},
        )
    bill = bills.build(session, visit)
    claim = claim_for_visit(session, visit, bill)
    signed = _signed(
        lambda: build_envelope(visit.facility.code, claim, local_date(utcnow())),
        visit,
        folder,
        lambda n: _l("The claim file was not made: %(n)s problems.", n=n),
    )
    claim_files = select(ClaimFile).where(
        ClaimFile.visit_id == visit.id, ClaimFile.tables != CHECK_IN
    )
    sending = session.scalar(claim_files.where(ClaimFile.status == ClaimStatus.QUEUED))
    if sending is not None:
        # It may be on its way: a second version now could leave the gateway with both.
        raise Conflict(
            str(
                _l(
                    "Version %(n)s is waiting to be sent: make a new one after the gateway "
                    "answers.",
                    n=sending.version,
                )
            ),
            errors={"visit_id": [ClaimStatus.QUEUED.value]},
        )
    for older in session.scalars(
        claim_files.where(ClaimFile.status.in_((ClaimStatus.READY, ClaimStatus.REJECTED)))
    ):
        older.status = ClaimStatus.SUPERSEDED
    return _keep(session, principal, visit, ",".join(tables_for(claim)), signed)


def _signed(build, visit: Visit, folder: Path | None, refused) -> bytes:
    """The file ``build`` makes, signed with the facility's key; its problems all at once,
    with ``refused(count)`` saying what was not made."""
    key_pem, cert_pem = load_keys(folder or keys_dir(), visit.facility.code)
    try:
        return sign_envelope(build(), key_pem, cert_pem)
    except ClaimError as exc:
        raise ValidationFailed(
            str(refused(len(exc.problems))),
            errors={"claim": list(exc.problems)},
        ) from exc


# The tables of a check-in file: XML0 alone, sent at the first charge, never superseded.
CHECK_IN = "XML0"


def _keep(
    session: Session, principal: Principal, visit: Visit, tables: str, signed: bytes
) -> ClaimFile:
    latest = session.scalar(
        select(func.max(ClaimFile.version)).where(ClaimFile.visit_id == visit.id)
    )
    row = ClaimFile(
        visit_id=visit.id,
        facility_id=visit.facility_id,
        version=(latest or 0) + 1,
        ma_lk=visit.visit_code,
        schema_version=SCHEMA_VERSION,
        tables=tables,
        content=signed,
        sha256=hashlib.sha256(signed).hexdigest(),
        status=ClaimStatus.READY,
        created_by_id=principal.user_id,
    )
    session.add(row)
    session.flush()
    audit.record_change(
        session, principal, "ClaimFile", row.id, visit.patient_id, f"{tables} v{row.version}"
    )
    return row


def make_check_in_file(
    session: Session, principal: Principal, visit_id: int, folder: Path | None = None
) -> ClaimFile:
    """The signed XML0 of a BHYT visit at its first charge; none for an emergency."""
    principal.require_any(*CLAIM_ROLES)
    visit = get_visit(session, principal, visit_id)
    if visit.payment != Payment.BHYT or visit.visit_type == VisitType.EMERGENCY:
        raise Conflict(
            str(_l("Only a BHYT visit that is not an emergency sends a check-in.")),
            errors={"visit_id": [visit.payment.value]},
        )
    check_in = check_in_for_visit(session, visit)
    signed = _signed(
        lambda: build_check_in(check_in),
        visit,
        folder,
        lambda n: _l("The check-in file was not made: %(n)s problems.", n=n),
    )
    return _keep(session, principal, visit, CHECK_IN, signed)


def latest_claim_file(session: Session, principal: Principal, visit_id: int) -> ClaimFile | None:
    principal.require_any(*CLAIM_ROLES)
    visit = get_visit(session, principal, visit_id)
    return session.scalar(
        select(ClaimFile)
        .where(ClaimFile.visit_id == visit.id, ClaimFile.tables != CHECK_IN)
        .order_by(ClaimFile.version.desc())
        .limit(1)
    )
