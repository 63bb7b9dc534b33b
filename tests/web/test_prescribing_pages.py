"""The prescription builder, view and print page through the Flask test client."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from his.models import Prescription, PrescriptionStatus, PrescriptionType, Role
from his.web.prescribing import print_quantity, vietnamese_number
from tests.factories import UserFactory
from tests.prescribing_data import (
    add_diagnosis,
    make_setting,
    small_child,
)
from tests.web.test_login_page import csrf_token, log_in

CODE = re.compile(r"[A-Z0-9]{5}[0-9a-z]{7}-[cnh]")


@pytest.fixture
def s(client, db_session):
    setting = make_setting(db_session)
    log_in(client, setting.doctor.username)
    return setting


def _row(i, code, dose="1", times="3", days="5", **extra):
    data = {
        f"items-{i}-drug_code": code,
        f"items-{i}-drug_search": "",
        f"items-{i}-dose": dose,
        f"items-{i}-times_per_day": times,
        f"items-{i}-days": days,
        f"items-{i}-route": "",
        f"items-{i}-instructions": "Sau ăn",
        f"items-{i}-quantity": "",
        f"items-{i}-quantity_reason": "",
    }
    data.update({f"items-{i}-{k}": v for k, v in extra.items()})
    return data


def _token(client, url):
    return csrf_token(client.get(url).get_data(as_text=True))


def test_builder_page_prefills_and_wires_the_check(client, s):
    page = client.get(f"/doctor/prescriptions/new?encounter_id={s.encounter.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'hx-post="/doctor/prescriptions/check?encounter_id={s.encounter.id}"' in html
    assert 'data-testid="drug-search-0"' in html and 'id="rx-row-template"' in html
    assert "J06.9" in html  # the diagnosis is shown


def test_drug_suggestions_without_accents(client, s):
    html = client.get(
        "/doctor/prescriptions/drugs", query_string={"row": 1, "items-1-drug_search": "amox"}
    ).get_data(as_text=True)
    assert 'data-code="AMOX500"' in html and 'data-row="1"' in html
    assert "Amoxicillin 500 mg" in html


def test_check_shows_computed_quantities_and_violations(client, s):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    data = {**_row(0, "PARA500", days="31"), **_row(2, "AMOX500", dose="0.5"), "course": "acute"}
    response = client.post(
        f"/doctor/prescriptions/check?encounter_id={s.encounter.id}",
        data=data,
        headers={"X-CSRFToken": token},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-rule="days-over-limit"' in html and 'data-field="items.0.days"' in html
    assert re.search(r'id="computed-0" hx-swap-oob="true"[^>]*>93 viên', html)
    # The second line sits in form row 2: its quantity goes there.
    assert re.search(r'id="computed-2" hx-swap-oob="true"[^>]*>8 viên', html)
    ok = client.post(
        f"/doctor/prescriptions/check?encounter_id={s.encounter.id}",
        data=_row(0, "PARA500"),
        headers={"X-CSRFToken": token},
    ).get_data(as_text=True)
    assert 'data-testid="rx-ok"' in ok


def test_sign_refused_then_fixed_then_printed(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    refused = client.post(
        url, data={**_row(0, "PARA500", days="45"), "action": "sign", "csrf_token": token}
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'data-rule="days-over-limit"' in html
    assert 'value="45"' in html  # what was typed stays
    assert db_session.scalars(select(Prescription)).all() == []
    client.post(url, data={**_row(0, "PARA500", days="45"), "action": "save", "csrf_token": token})
    rx = db_session.scalars(select(Prescription)).one()
    page = client.get(f"/doctor/prescriptions/{rx.id}/edit").get_data(as_text=True)
    assert 'data-rule="days-over-limit"' in page
    signed = client.post(
        f"/doctor/prescriptions/{rx.id}/edit",
        data={**_row(0, "PARA500", days="5"), "action": "sign", "csrf_token": token},
    )
    assert signed.status_code == 302, signed.get_data(as_text=True)
    db_session.expire_all()
    assert rx.status is PrescriptionStatus.SIGNED and CODE.fullmatch(rx.code)
    view = client.get(signed.headers["Location"]).get_data(as_text=True)
    assert rx.code in view and 'data-testid="rx-print"' in view
    assert 'data-testid="rx-submission" data-status="pending"' in view
    printed = client.get(f"/doctor/prescriptions/{rx.id}/print").get_data(as_text=True)
    assert f'data-testid="print-code">{rx.code}<' in printed
    assert 'data-testid="print-qr"' in printed and "data:image/png;base64," in printed
    assert 'data-testid="print-barcode"' in printed and "data:image/svg+xml;base64," in printed
    assert "Paracetamol 500 mg (Panadol)" in printed
    assert ">15 viên<" in printed
    assert s.patient.full_name.upper() in printed
    assert "prescription-print.css" in printed


def test_sign_with_violations_stays_a_draft_and_says_why(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    client.post(url, data={**_row(0, "PARA500", days="45"), "action": "save", "csrf_token": token})
    rx = db_session.scalars(select(Prescription)).one()
    response = client.post(f"/doctor/prescriptions/{rx.id}/sign", data={"csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'data-rule="days-over-limit"' in html
    db_session.expire_all()
    assert rx.code is None


def test_save_with_unreadable_numbers_keeps_the_form(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    response = client.post(
        url, data={**_row(0, "PARA500", dose="abc"), "action": "save", "csrf_token": token}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'data-testid="error-items-0-dose"' in html
    assert db_session.scalars(select(Prescription)).all() == []


def test_unknown_drug_is_shown_under_its_line(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    data = {**_row(1, "NOPE"), "action": "save", "csrf_token": token}
    response = client.post(url, data=data)
    assert response.status_code == 422
    assert 'data-testid="error-items-1-drug_search"' in response.get_data(as_text=True)


def test_child_print_shows_age_weight_guardian(client, db_session):
    child = small_child(db_session, months=30, guardian="Trần Văn Bố")
    s = make_setting(db_session, patient=child)
    log_in(client, s.doctor.username)
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    page = client.get(url).get_data(as_text=True)
    assert 'value="30"' in page and 'value="Trần Văn Bố"' in page
    token = csrf_token(page)
    data = {
        **_row(0, "PARA500", dose="0.5"),
        "age_months": "30",
        "weight_kg": "13",
        "guardian_name": "Trần Văn Bố",
        "action": "sign",
        "csrf_token": token,
    }
    response = client.post(url, data=data)
    assert response.status_code == 302
    rx = db_session.scalars(select(Prescription)).one()
    printed = client.get(f"/doctor/prescriptions/{rx.id}/print").get_data(as_text=True)
    assert 'data-testid="print-guardian">Trần Văn Bố' in printed
    assert "13 kg" in printed and "(30 " in printed
    assert ">08 viên<" in printed  # under 10 with a leading zero


def test_replace_from_the_view(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    client.post(url, data={**_row(0, "PARA500"), "action": "sign", "csrf_token": token})
    old = db_session.scalars(select(Prescription)).one()
    form = client.get(f"/doctor/prescriptions/{old.id}/replace").get_data(as_text=True)
    assert 'name="reason"' in form and 'value="PARA500"' in form
    # The builder's check leaves the replaced prescription's own drugs out of the duplicates.
    assert f"replaces_id={old.id}" in form
    checked = client.post(
        f"/doctor/prescriptions/check?encounter_id={s.encounter.id}&replaces_id={old.id}",
        data={**_row(0, "PARA500", days="3"), "csrf_token": token},
    ).get_data(as_text=True)
    assert "duplicate-ingredient" not in checked
    unrelated = client.post(
        f"/doctor/prescriptions/check?encounter_id={s.encounter.id}",
        data={**_row(0, "PARA500", days="3"), "csrf_token": token},
    ).get_data(as_text=True)
    assert 'data-rule="duplicate-ingredient"' in unrelated
    response = client.post(
        f"/doctor/prescriptions/{old.id}/replace",
        data={**_row(0, "PARA500", days="3"), "reason": "Giảm ngày", "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    db_session.expire_all()
    assert old.status is PrescriptionStatus.REPLACED
    new = db_session.scalars(select(Prescription).where(Prescription.replaces_id == old.id)).one()
    assert CODE.fullmatch(new.code)
    view = client.get(f"/doctor/prescriptions/{old.id}").get_data(as_text=True)
    assert 'data-testid="rx-submission" data-status="withdrawn"' in view


def test_a_receptionist_cannot_open_the_builder(client, db_session):
    s = make_setting(db_session)
    user = UserFactory(roles=(Role.RECEPTIONIST,), facility=s.facility)
    log_in(client, user.username)
    response = client.get(f"/doctor/prescriptions/new?encounter_id={s.encounter.id}")
    assert response.status_code == 403


def test_quantities_on_paper(babel_context):
    assert print_quantity(5, PrescriptionType.OTHER) == "05"
    assert print_quantity(12, PrescriptionType.OTHER) == "12"
    assert print_quantity("22.5", PrescriptionType.OTHER) == "22.5"
    assert print_quantity(10, PrescriptionType.NARCOTIC) == "10 (mười)"
    assert print_quantity(5, PrescriptionType.NARCOTIC) == "05 (năm)"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "một"),
        (15, "mười lăm"),
        (21, "hai mươi mốt"),
        (24, "hai mươi tư"),
        (25, "hai mươi lăm"),
        (30, "ba mươi"),
        (105, "một trăm linh năm"),
        (110, "một trăm mười"),
        (1005, "một nghìn không trăm linh năm"),
    ],
)
def test_vietnamese_numbers(n, words):
    assert vietnamese_number(n) == words


def test_code128_symbols_are_well_formed():
    from his.web import code128

    assert len(code128.PATTERNS) == 107 and len(set(code128.PATTERNS)) == 107
    assert all(sum(map(int, p)) == 11 for p in code128.PATTERNS[:106])
    assert sum(map(int, code128.PATTERNS[code128.STOP])) == 13
    values = code128.symbols("91001l8op38i-c")
    assert values[0] == code128.START_B and values[-1] == code128.STOP
    # Characters are ASCII - 32 in code set B; the checksum is weighted by position.
    assert values[1:-2] == [ord(ch) - 32 for ch in "91001l8op38i-c"]
    weighted = code128.START_B + sum(v * i for i, v in enumerate(values[1:-2], start=1))
    assert values[-2] == weighted % 103
    widths = code128.widths("AB")
    assert len(widths) == 6 * 4 + 7 and sum(widths) == 11 * 4 + 13
    # Decoding the widths back through the table gives the text again.
    chunks = [widths[i : i + 6] for i in range(0, 24, 6)]
    decoded = [code128.PATTERNS.index("".join(map(str, c))) for c in chunks]
    assert decoded[1:3] == [ord("A") - 32, ord("B") - 32]
    with pytest.raises(ValueError):
        code128.symbols("đơn")


def test_print_shows_the_diagnoses_as_signed(client, s, db_session):
    url = f"/doctor/prescriptions/new?encounter_id={s.encounter.id}"
    token = _token(client, url)
    client.post(url, data={**_row(0, "PARA500"), "action": "sign", "csrf_token": token})
    rx = db_session.scalars(select(Prescription)).one()
    assert rx.status is PrescriptionStatus.SIGNED
    add_diagnosis(db_session, s.encounter, s.icd, "K29.7")  # an amendment after signing
    printed = client.get(f"/doctor/prescriptions/{rx.id}/print").get_data(as_text=True)
    diagnosis = re.search(r'data-testid="print-diagnosis">(.*?)</td>', printed).group(1)
    assert "J06.9" in diagnosis and "K29.7" not in diagnosis
