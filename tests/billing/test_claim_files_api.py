"""The claim file of a finished BHYT visit through the REST API: built from the visit and its
bill, valid against our schemas, signed with the facility's certificate, and parsed back
with its totals cross-checked against the bill and the details."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from billing.claims import read_envelope, read_table, verify_envelope
from billing.models import ClaimFile, ClaimStatus
from his.db import utcnow
from his.models import (
    Diagnosis,
    MedicalService,
    Payment,
    Role,
    ServiceKind,
    VisitStatus,
)
from his.services.access import Principal
from tests.billing_data import claim_hospital, finished_visit
from tests.factories import UserFactory


@pytest.fixture
def keys(tmp_path, app):
    app.config["HIS_SETTINGS"] = app.config["HIS_SETTINGS"].__class__(
        **{**app.config["HIS_SETTINGS"].__dict__, "claim_keys_dir": tmp_path / "keys"}
    )
    return tmp_path / "keys"


@pytest.fixture
def hospital(db_session, keys):
    return claim_hospital(db_session, keys)


def _finished_visit(db_session, place, **visit_fields):
    return finished_visit(db_session, place, **visit_fields)


def test_the_claim_file_is_signed_valid_and_adds_up(
    client, db_session, hospital, keys, login_token
):
    visit = _finished_visit(db_session, hospital)
    headers = login_token(hospital.cashier.username)
    bill = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    # 42,100 + 21,500 + 65,400 + 10 x 1,500 = 144,000 < 379,500: a small bill, all paid
    # by the fund (referred, level 4 raised to 100 %).
    assert (bill["total"], bill["insurance_pays"], bill["coverage_rule"]) == (
        144_000,
        144_000,
        "small_bill",
    )

    response = client.get(f"/api/v1/claims/{visit.id}/xml", headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.content_type == "application/xml; charset=utf-8"
    signed = response.get_data()
    cert = (keys / "91001.cert.pem").read_bytes()
    verify_envelope(signed, cert)
    tables = read_envelope(signed)
    assert sorted(tables) == ["XML1", "XML2", "XML3", "XML4"]
    [summary] = read_table("XML1", tables["XML1"])
    assert summary["MA_LK"] == visit.visit_code
    assert summary["HO_TEN"] == "Nguyễn Thị Ánh"
    assert summary["NGAY_SINH"] == "198000000000"  # year of birth only
    assert summary["MA_THE_BHYT"] == "DN4911234567890"
    assert summary["MA_BENH_CHINH"] == "J18.9"
    assert summary["MA_NOI_DI"] == "91002"
    assert summary["MA_CSKCB"] == "91001" and summary["MA_TTDV"] == "9100012345"
    assert summary["T_TONGCHI_BV"] == "144000.00"
    assert summary["T_THUOC"] == "15000.00"
    assert summary["T_BHTT"] == "144000.00" and summary["T_BNCCT"] == "0.00"
    drugs = read_table("XML2", tables["XML2"])
    services = read_table("XML3", tables["XML3"])
    assert [(d["MA_THUOC"], d["SO_LUONG"], d["THANH_TIEN_BV"]) for d in drugs] == [
        ("AMO500", "10.000", "15000.00")
    ]
    assert [(s["MA_DICH_VU"], s["MA_NHOM"], s["THANH_TIEN_BV"]) for s in services] == [
        ("02.1896", "13", "42100.00"),
        ("23.0075.1494", "1", "21500.00"),
        ("18.0071.0028", "2", "65400.00"),
    ]
    assert {s["MA_BAC_SI"] for s in services} == {"000123/AG-CCHN"}
    details = [*drugs, *services]
    for tag in ("THANH_TIEN_BV", "T_BHTT", "T_BNCCT", "T_BNTT"):
        total = sum(Decimal(d[tag]) for d in details)
        assert Decimal(summary[tag.replace("THANH_TIEN_BV", "T_TONGCHI_BV")]) == total, tag
    [result] = read_table("XML4", tables["XML4"])
    assert (result["MA_DICH_VU"], result["GIA_TRI"], result["DON_VI_DO"]) == (
        "23.0075.1494",
        "5.6",
        "mmol/L",
    )
    stored = db_session.scalar(select(ClaimFile).where(ClaimFile.visit_id == visit.id))
    assert stored.version == 1 and stored.status == ClaimStatus.READY
    assert stored.tables == "XML1,XML2,XML3,XML4"
    # The same file again, not a new version.
    again = client.get(f"/api/v1/claims/{visit.id}/xml", headers=headers)
    assert again.get_data() == signed


def test_a_supply_is_an_xml3_line_of_its_own_group(client, db_session, hospital, keys, login_token):
    from billing.charges import add_charge
    from billing.models import ChargeKind
    from his.services import catalogs

    db_session.add(
        MedicalService(
            facility_id=hospital.facility.id,
            code="N03.03.030",
            name="Bơm tiêm nhựa 5 ml",
            kind=ServiceKind.OTHER,
            unit="cái",
            bhyt_price=1_000,
            service_price=1_200,
            search_key=catalogs.search_text("N03.03.030", "Bơm tiêm nhựa 5 ml"),
            valid_from=dt.date(2026, 1, 1),
        )
    )
    visit = _finished_visit(db_session, hospital)
    nurse = Principal.for_user(hospital.nurse)
    add_charge(db_session, nurse, visit.id, "N03.03.030", Decimal(3), ChargeKind.SUPPLY)

    response = client.get(
        f"/api/v1/claims/{visit.id}/xml", headers=login_token(hospital.cashier.username)
    )

    assert response.status_code == 200, response.get_data(as_text=True)[:1500]
    tables = read_envelope(response.get_data())
    [summary] = read_table("XML1", tables["XML1"])
    assert summary["T_VTYT"] == "3000.00"
    supply = [row for row in read_table("XML3", tables["XML3"]) if row["MA_NHOM"] == "10"]
    assert [(row["TEN_VAT_TU"], row["SO_LUONG"], row["THANH_TIEN_BV"]) for row in supply] == [
        ("Bơm tiêm nhựa 5 ml", "3.000", "3000.00")
    ]


def test_a_new_version_supersedes_the_last_and_keeps_ma_lk(
    client, db_session, hospital, login_token
):
    visit = _finished_visit(db_session, hospital)
    headers = login_token(hospital.cashier.username)
    first = client.post(f"/api/v1/claims/{visit.id}", headers=headers)
    second = client.post(f"/api/v1/claims/{visit.id}", headers=headers)
    assert first.status_code == 201 and second.status_code == 201, second.get_json()
    assert second.get_json()["version"] == 2
    assert second.get_json()["ma_lk"] == first.get_json()["ma_lk"] == visit.visit_code
    db_session.expire_all()
    statuses = db_session.scalars(
        select(ClaimFile.status).where(ClaimFile.visit_id == visit.id).order_by(ClaimFile.version)
    ).all()
    assert statuses == [ClaimStatus.SUPERSEDED, ClaimStatus.READY]


def test_what_cannot_be_claimed_is_refused_clearly(client, db_session, hospital, login_token):
    headers = login_token(hospital.cashier.username)
    open_visit = _finished_visit(db_session, hospital)
    open_visit.status = VisitStatus.IN_EXAMINATION
    db_session.flush()
    unfinished = client.get(f"/api/v1/claims/{open_visit.id}/xml", headers=headers)
    assert unfinished.status_code == 409
    assert unfinished.content_type == "application/problem+json"

    fee = _finished_visit(db_session, hospital)
    fee.payment = Payment.FEE
    db_session.flush()
    assert client.post(f"/api/v1/claims/{fee.id}", headers=headers).status_code == 409

    no_diagnosis = _finished_visit(db_session, hospital)
    for encounter_diagnosis in db_session.scalars(select(Diagnosis)).all():
        encounter_diagnosis.removed_at = utcnow()
    db_session.flush()
    db_session.expire_all()
    refused = client.post(f"/api/v1/claims/{no_diagnosis.id}", headers=headers)
    assert refused.status_code == 422 and "diagnosis" in refused.get_json()["errors"]

    elsewhere = UserFactory(roles=(Role.CASHIER,))
    other = client.get(
        f"/api/v1/claims/{open_visit.id}/xml", headers=login_token(elsewhere.username)
    )
    assert other.status_code == 404
    doctor = client.post(
        f"/api/v1/claims/{open_visit.id}", headers=login_token(hospital.doctor.username)
    )
    assert doctor.status_code == 403
    assert db_session.scalar(select(ClaimFile.id)) is None


def test_a_facility_without_a_certificate_gets_a_clear_error(
    client, db_session, hospital, keys, login_token
):
    visit = _finished_visit(db_session, hospital)
    for pem in keys.iterdir():
        pem.unlink()
    response = client.post(
        f"/api/v1/claims/{visit.id}", headers=login_token(hospital.cashier.username)
    )
    assert response.status_code == 422
    assert "91001.key.pem" in response.get_json()["detail"]
