"""The doctor's worklist and encounter pages through the Flask test client."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from his.models import Encounter, EncounterStatus, PriorityReason, VisitStatus
from tests import encounters_data as data
from tests.factories import PatientFactory, VisitFactory
from tests.web.test_login_page import csrf_token, log_in


@pytest.fixture
def clinic(db_session):
    clinic = data.clinic(db_session, code="91001")
    data.icd10_lists(db_session)
    return clinic


@pytest.fixture
def doctor(client, clinic):
    log_in(client, clinic.doctor.username)
    return clinic


def waiting(clinic, number, priority=None, name=None):
    patient = PatientFactory(**({"full_name": name} if name else {}))
    return VisitFactory(
        facility_id=clinic.facility.id,
        patient_id=patient.id,
        room_id=clinic.room.id,
        queue_date=data.today(),
        queue_number=number,
        priority_reason=priority,
        status=VisitStatus.WAITING,
    )


def post(client, url, form=None, page=None):
    token = csrf_token(client.get(page or "/doctor/").get_data(as_text=True))
    return client.post(url, data={**(form or {}), "csrf_token": token})


def open_encounter(client, clinic):
    visit = waiting(clinic, 1, name="Phạm Thị Hoa")
    response = post(client, f"/doctor/visits/{visit.id}/start", {"room_id": clinic.room.id})
    assert response.status_code == 302, response.get_data(as_text=True)
    match = re.search(r"/doctor/encounters/(\d+)", response.headers["Location"])
    assert match
    return int(match.group(1))


def page(client, encounter_id):
    response = client.get(f"/doctor/encounters/{encounter_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_room_choice_and_worklist_order(client, doctor, db_session):
    clinic = doctor
    rooms = client.get("/doctor/").get_data(as_text=True)
    assert f'href="/doctor/rooms/{clinic.room.id}"' in rooms
    waiting(clinic, 1, name="Nguyễn Văn Một")
    waiting(clinic, 2, PriorityReason.PREGNANT, name="Lê Thị Hai")
    html = client.get(f"/doctor/rooms/{clinic.room.id}").get_data(as_text=True)
    assert html.index("Lê Thị Hai") < html.index("Nguyễn Văn Một")
    assert 'data-testid="priority"' in html and 'data-testid="call-next"' in html
    # The part htmx refreshes holds the same list.
    fragment = client.get(f"/doctor/rooms/{clinic.room.id}/list").get_data(as_text=True)
    assert "<html" not in fragment
    assert fragment.index("Lê Thị Hai") < fragment.index("Nguyễn Văn Một")
    assert client.get("/doctor/rooms/999999").status_code == 404


def test_call_next_then_start(client, doctor, db_session):
    clinic = doctor
    visit = waiting(clinic, 1, name="Trần Văn Ba")
    called = post(client, f"/doctor/rooms/{clinic.room.id}/call-next")
    assert called.status_code == 302
    html = client.get(called.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="called-notice"' in html and "Trần Văn Ba" in html
    db_session.expire_all()
    assert visit.called_at is not None
    nobody = post(client, f"/doctor/rooms/{clinic.room.id}/call-next")
    assert nobody.status_code == 404
    assert 'data-testid="worklist-problem"' in nobody.get_data(as_text=True)
    start = post(client, f"/doctor/visits/{visit.id}/start", {"room_id": clinic.room.id})
    assert start.status_code == 302
    db_session.expire_all()
    assert visit.status is VisitStatus.IN_EXAMINATION
    # Starting again continues the open encounter instead of failing.
    again = post(client, f"/doctor/visits/{visit.id}/start", {"room_id": clinic.room.id})
    assert again.headers["Location"] == start.headers["Location"]
    html = client.get(f"/doctor/rooms/{clinic.room.id}").get_data(as_text=True)
    assert 'data-testid="open-encounter"' in html


def test_encounter_form_posts(client, doctor, db_session):
    clinic = doctor
    encounter_id = open_encounter(client, clinic)
    url = f"/doctor/encounters/{encounter_id}"
    html = page(client, encounter_id)
    assert "Phạm Thị Hoa" in html
    assert f'href="/doctor/prescriptions/new?encounter_id={encounter_id}"' in html
    encounter = db_session.get(Encounter, encounter_id)
    saved = post(
        client,
        f"{url}/notes",
        {
            "reason": "Đau đầu",
            "history": "2 ngày",
            "findings": "HA cao",
            "version": encounter.version,
        },
        page=url,
    )
    assert saved.status_code == 302
    db_session.expire_all()
    assert encounter.reason == "Đau đầu"
    vitals = post(
        client,
        f"{url}/vitals",
        {"systolic": "160", "diastolic": "95", "weight": "50", "height": "155"},
        page=url,
    )
    assert vitals.status_code == 302
    html = page(client, encounter_id)
    assert re.search(r'data-testid="bmi">20\.8<', html)
    added = post(client, f"{url}/diagnoses", {"icd10_q": "I10", "main": "1"}, page=url)
    assert added.status_code == 302
    # A suggestion button sends its code in ``icd10``, taking precedence over the box.
    post(client, f"{url}/diagnoses", {"icd10_q": "đái", "icd10": "E11.9"}, page=url)
    order = post(
        client, f"{url}/orders", {"service_code": "23.0075.1494", "quantity": "1"}, page=url
    )
    assert order.status_code == 302
    html = page(client, encounter_id)
    assert 'data-code="I10"' in html and 'data-code="E11.9"' in html
    assert 'data-testid="main-diagnosis"' in html
    order_id = int(re.search(r'data-order-id="(\d+)"', html).group(1))
    result = post(client, f"{url}/orders/{order_id}/result", {"value": "6.1"}, page=url)
    assert result.status_code == 302
    assert "mmol/L" in page(client, encounter_id)


def test_errors_are_shown_next_to_the_fields(client, doctor, db_session):
    clinic = doctor
    encounter_id = open_encounter(client, clinic)
    url = f"/doctor/encounters/{encounter_id}"
    bad = post(client, f"{url}/vitals", {"pulse": "300", "temperature": "36,8"}, page=url)
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'data-testid="error-pulse"' in html and "20 đến 250 /min" in html
    # What was typed is kept.
    assert re.search(r'id="vital-temperature"[^>]*value="36,8"', html)
    wrong = post(client, f"{url}/diagnoses", {"icd10_q": "J06", "main": "1"}, page=url)
    assert wrong.status_code == 422
    assert 'data-testid="error-icd10"' in wrong.get_data(as_text=True)
    assert "J06.9" in wrong.get_data(as_text=True)
    unfinished = post(client, f"{url}/finish", {"disposition": "home"}, page=url)
    assert unfinished.status_code == 422
    assert 'data-testid="error-diagnoses"' in unfinished.get_data(as_text=True)
    no_date = post(client, f"{url}/diagnoses", {"icd10_q": "I10", "main": "1"}, page=url)
    assert no_date.status_code == 302
    follow = post(client, f"{url}/finish", {"disposition": "follow_up"}, page=url)
    assert follow.status_code == 422
    assert 'data-testid="error-follow_up_date"' in follow.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(Encounter, encounter_id).status is EncounterStatus.IN_PROGRESS


def test_finish_then_read_only_and_amend(client, doctor, db_session):
    clinic = doctor
    encounter_id = open_encounter(client, clinic)
    url = f"/doctor/encounters/{encounter_id}"
    post(client, f"{url}/notes", {"findings": "Họng đỏ"}, page=url)
    post(client, f"{url}/diagnoses", {"icd10_q": "I10", "main": "1"}, page=url)
    follow_up = (data.today() + dt.timedelta(days=7)).isoformat()
    done = post(
        client,
        f"{url}/finish",
        {"disposition": "follow_up", "follow_up_date": follow_up, "conclusion": "THA"},
        page=url,
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    html = page(client, encounter_id)
    assert 'data-testid="signed"' in html and 'data-testid="notes-readonly"' in html
    assert 'data-testid="notes-form"' not in html and 'data-testid="finish-form"' not in html
    assert 'data-testid="amend-form"' in html
    locked = post(client, f"{url}/vitals", {"pulse": "80"}, page=url)
    assert locked.status_code == 409
    no_reason = post(client, f"{url}/amend", {"findings": "Họng đỏ, amidan to"}, page=url)
    assert no_reason.status_code == 409
    assert 'data-testid="error-amendment_reason"' in no_reason.get_data(as_text=True)
    amended = post(
        client,
        f"{url}/amend",
        {"findings": "Họng đỏ, amidan to", "amendment_reason": "Bổ sung"},
        page=url,
    )
    assert amended.status_code == 302
    html = page(client, encounter_id)
    assert 'data-testid="amendment"' in html and "<del>Họng đỏ</del>" in html


def signed_encounter(client, clinic, db_session, *codes):
    encounter_id = open_encounter(client, clinic)
    url = f"/doctor/encounters/{encounter_id}"
    post(client, f"{url}/diagnoses", {"icd10_q": "I10", "main": "1"}, page=url)
    for code in codes:
        post(client, f"{url}/diagnoses", {"icd10_q": code}, page=url)
    post(client, f"{url}/orders", {"service_code": "23.0075.1494"}, page=url)
    done = post(client, f"{url}/finish", {"disposition": "home"}, page=url)
    assert done.status_code == 302, done.get_data(as_text=True)
    db_session.expire_all()
    return db_session.get(Encounter, encounter_id), url


def test_signed_diagnoses_are_amended_with_a_reason(client, doctor, db_session):
    encounter, url = signed_encounter(client, doctor, db_session, "E11.9")
    main, extra = encounter.diagnoses
    html = page(client, encounter.id)
    assert 'data-testid="amend-diagnoses-form"' in html
    assert 'data-testid="diagnosis-form"' not in html
    no_reason = post(client, f"{url}/diagnoses/amend", {"icd10_q": "K29.7"}, page=url)
    assert no_reason.status_code == 409
    assert 'data-testid="error-amendment_reason"' in no_reason.get_data(as_text=True)
    bad = post(
        client, f"{url}/diagnoses/amend", {"icd10_q": "U85", "amendment_reason": "x"}, page=url
    )
    assert bad.status_code == 422 and 'data-testid="error-icd10"' in bad.get_data(as_text=True)
    nothing_chosen = post(
        client, f"{url}/diagnoses/amend", {"action": "remove", "amendment_reason": "x"}, page=url
    )
    assert nothing_chosen.status_code == 422
    assert 'data-testid="error-target"' in nothing_chosen.get_data(as_text=True)
    replaced = post(
        client,
        f"{url}/diagnoses/amend",
        {"target": main.id, "icd10_q": "K29.7", "amendment_reason": "Sai mã bệnh chính"},
        page=url,
    )
    assert replaced.status_code == 302, replaced.get_data(as_text=True)
    removed = post(
        client,
        f"{url}/diagnoses/amend",
        {"action": "remove", "target": extra.id, "amendment_reason": "Không có ĐTĐ"},
        page=url,
    )
    assert removed.status_code == 302, removed.get_data(as_text=True)
    html = page(client, encounter.id)
    assert re.search(r'data-code="K29.7" class="main"', html)
    assert 'data-testid="removed-diagnosis" data-code="I10"' in html
    assert 'data-testid="removed-diagnosis" data-code="E11.9"' in html
    assert html.count('data-testid="change-diagnoses"') == 2
    assert "Sai mã bệnh chính" in html and "Không có ĐTĐ" in html
    db_session.expire_all()
    assert [d.icd10_code for d in encounter.diagnoses] == ["K29.7"]
    assert encounter.status is EncounterStatus.FINISHED


def test_colleague_sees_no_diagnosis_amendment_form(client, clinic, db_session):
    from tests.factories import UserFactory

    log_in(client, clinic.doctor.username)
    encounter, _ = signed_encounter(client, clinic, db_session)
    colleague = UserFactory(roles=("doctor",), facility=clinic.facility)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    log_in(client, colleague.username)
    html = page(client, encounter.id)
    assert 'data-testid="signed"' in html
    assert 'data-testid="amend-diagnoses-form"' not in html


def test_result_after_signing_from_the_page(client, doctor, db_session):
    encounter, url = signed_encounter(client, doctor, db_session)
    [order] = encounter.orders
    html = page(client, encounter.id)
    assert 'data-testid="result-form"' in html and 'data-testid="result-reason"' in html
    assert 'data-testid="cancel-order"' not in html
    saved = post(client, f"{url}/orders/{order.id}/result", {"value": "9.1"}, page=url)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    html = page(client, encounter.id)
    assert 'data-testid="change-result"' in html and "Nhận kết quả sau khi đã ký." in html
    assert "<ins>9.1 mmol/L</ins>" in html
    db_session.expire_all()
    assert encounter.status is EncounterStatus.FINISHED
    assert encounter.amendments[0].content_hash == encounter.content_hash


def test_disposition_amended_from_the_signed_page(client, doctor, db_session):
    encounter, url = signed_encounter(client, doctor, db_session)
    html = page(client, encounter.id)
    assert 'data-testid="amend-disposition-form"' in html
    follow_up = (data.today() + dt.timedelta(days=10)).isoformat()
    form = {"disposition": "follow_up", "follow_up_date": follow_up}
    no_reason = post(client, f"{url}/disposition/amend", form, page=url)
    assert no_reason.status_code == 422
    assert 'data-testid="error-amendment_reason"' in no_reason.get_data(as_text=True)
    no_date = post(
        client,
        f"{url}/disposition/amend",
        {"disposition": "follow_up", "amendment_reason": "Hẹn tái khám"},
        page=url,
    )
    assert no_date.status_code == 422
    assert 'data-testid="error-follow_up_date"' in no_date.get_data(as_text=True)
    done = post(
        client, f"{url}/disposition/amend", {**form, "amendment_reason": "Hẹn tái khám"}, page=url
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    html = page(client, encounter.id)
    assert 'data-testid="change-disposition"' in html and "<ins>Hẹn tái khám</ins>" in html
    db_session.expire_all()
    assert encounter.disposition.value == "follow_up"
    assert encounter.follow_up_date.isoformat() == follow_up


def test_receptionist_cannot_open_the_encounter(client, clinic, db_session):
    log_in(client, clinic.doctor.username)
    encounter_id = open_encounter(client, clinic)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    log_in(client, clinic.receptionist.username)
    response = client.get(f"/doctor/encounters/{encounter_id}")
    assert response.status_code == 403
    assert client.get(f"/doctor/rooms/{clinic.room.id}").status_code == 403


def test_icd10_autocomplete_without_accents(client, doctor, db_session):
    clinic = doctor
    encounter_id = open_encounter(client, clinic)
    html = client.get(
        "/doctor/icd10", query_string={"icd10_q": "tang huyet ap", "encounter_id": encounter_id}
    ).get_data(as_text=True)
    assert 'data-code="I10"' in html and 'name="icd10"' in html
    codes = client.get(
        "/doctor/icd10", query_string={"icd10_q": "J06", "encounter_id": encounter_id}
    ).get_data(as_text=True)
    assert 'data-code="J06.9"' in codes


def test_service_autocomplete(client, doctor, db_session):
    clinic = doctor
    encounter_id = open_encounter(client, clinic)
    html = client.get(
        "/doctor/services", query_string={"service_q": "glucose", "encounter_id": encounter_id}
    ).get_data(as_text=True)
    assert 'data-code="23.0075.1494"' in html
    assert db_session.scalar(select(Encounter.id).where(Encounter.id == encounter_id))
